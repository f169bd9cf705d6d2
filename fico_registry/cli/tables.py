"""Terminal tables that never cut a model name: `fico models` on a narrow terminal or piped.

rich shrinks a table to the console (80 columns when piped) by ellipsising cells, which cut
names users must type. Here the name and plugin columns never wrap and are as wide as their
longest cell, other cells fold (wrap) instead of ellipsising, and the table is printed at least
at the width those minimums need (a terminal narrower than that wraps the lines itself: nothing
is lost); piped output gets the table's natural width, one line per row (grep-able).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

MODEL_COLUMNS = ("name", "family", "output", "width", "measure", "inputs", "plugin", "checkpoints")


def model_rows(specs: Sequence[Any], owner: Callable[[Any], str] | None = None) -> list[tuple[str, ...]]:
    """One row per card; owner(spec) fills the plugin cell (e.g. flagging a name two plugins register)."""
    rows: list[tuple[str, ...]] = []
    for s in specs:
        width = f"{s.bits} bits" if s.bits else (f"{s.dim}-d" if s.dim else "")
        measure = s.measure or ""
        if s.query_time_attention is not None:
            measure = f"{s.query_time_attention}" + (f" (1st: {s.measure})" if s.measure else "")
        rows.append(
            (
                s.name + (f" ({', '.join(s.aliases)})" if s.aliases else ""),
                str(s.family),
                str(s.output),
                width,
                measure,
                f"{s.image_input} + {s.text_input}",
                owner(s) if owner else (s.distribution or ""),
                ", ".join(s.checkpoints) or "-",
            )
        )
    return rows


def models_table(specs: Sequence[Any], owner: Callable[[Any], str] | None = None) -> Any:
    from rich.table import Table

    rows = model_rows(specs, owner)
    table = Table(title=f"{len(specs)} models")
    for index, column in enumerate(MODEL_COLUMNS):
        if column in ("name", "plugin"):  # what users type (fico evaluate NAME, pip install PLUGIN): one piece
            longest = max((len(row[index]) for row in rows), default=0)
            table.add_column(column, no_wrap=True, overflow="fold", min_width=max(len(column), longest))
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def print_unclipped(console: Any, table: Any) -> None:
    """Print `table` without ellipsising: on a terminal at least as wide as the name column plus every other
    column at its header's width (else rich squeezes columns away), piped at its natural width."""
    from rich.console import Console
    from rich.measure import Measurement

    if console.is_terminal:
        # unbroken columns at their longest cell, the others at their header; each cell 2 padding + 1 border
        least = sum(c.min_width if c.no_wrap and c.min_width else len(str(c.header)) for c in table.columns)
        width = max(console.width, least + 3 * len(table.columns) + 1)
    else:
        width = max(console.width, Measurement.get(console, console.options.update_width(1 << 16), table).maximum)
    if width == console.width:
        console.print(table)
        return
    wide = Console(
        file=console.file, width=width, color_system=console.color_system, force_terminal=console.is_terminal
    )
    wide.print(table)
