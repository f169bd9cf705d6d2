// fico leaderboard: sortable columns and family / output filters. Plain DOM, no dependencies.
// Cell values are read from data-sort attributes; nothing is ever parsed as HTML.
(function () {
  "use strict";
  var table = document.getElementById("board");
  if (!table || !table.tBodies.length) {
    return;
  }
  var tbody = table.tBodies[0];

  function sortKey(row, col, numeric) {
    var cell = row.cells[col];
    var raw = cell ? cell.getAttribute("data-sort") : null;
    if (raw === null || raw === "") {
      return null; // missing values sort last in both directions
    }
    if (numeric) {
      var value = Number(raw);
      return isNaN(value) ? null : value;
    }
    return raw.toLowerCase();
  }

  function sortBy(button) {
    var col = Number(button.getAttribute("data-col"));
    var numeric = button.getAttribute("data-type") === "num";
    var th = button.parentNode;
    var current = th.getAttribute("aria-sort");
    var direction;
    if (current === "descending") {
      direction = "ascending";
    } else if (current === "ascending") {
      direction = "descending";
    } else {
      // first click shows the best first
      direction = numeric && button.getAttribute("data-better") !== "lower" ? "descending" : "ascending";
    }
    var headers = table.querySelectorAll("thead th[aria-sort]");
    for (var i = 0; i < headers.length; i++) {
      headers[i].removeAttribute("aria-sort");
    }
    th.setAttribute("aria-sort", direction);
    var sign = direction === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var ka = sortKey(a, col, numeric);
      var kb = sortKey(b, col, numeric);
      if (ka === null || kb === null) {
        return ka === kb ? 0 : ka === null ? 1 : -1;
      }
      return ka < kb ? -sign : ka > kb ? sign : 0;
    });
    for (var j = 0; j < rows.length; j++) {
      tbody.appendChild(rows[j]);
    }
  }

  var buttons = table.querySelectorAll("thead button[data-col]");
  for (var b = 0; b < buttons.length; b++) {
    buttons[b].addEventListener("click", function (event) {
      sortBy(event.currentTarget);
    });
  }

  var form = document.getElementById("filters");
  var count = document.getElementById("shown-count");

  function checked(name) {
    var wanted = {};
    var boxes = form.querySelectorAll("input[name='" + name + "']");
    for (var i = 0; i < boxes.length; i++) {
      if (boxes[i].checked) {
        wanted[boxes[i].value] = true;
      }
    }
    return wanted;
  }

  function applyFilters() {
    var families = checked("family");
    var outputs = checked("output");
    var shown = 0;
    for (var i = 0; i < tbody.rows.length; i++) {
      var row = tbody.rows[i];
      var visible = families[row.getAttribute("data-family")] === true && outputs[row.getAttribute("data-output")] === true;
      row.hidden = !visible;
      if (visible) {
        shown += 1;
      }
    }
    count.textContent = shown + " of " + tbody.rows.length + " entries shown";
  }

  if (form && count) {
    form.addEventListener("change", applyFilters);
    applyFilters();
  }
})();
