"""The leaderboard site in a real headless browser (Debian's chromium driven by playwright).

Needs the `playwright` Python package and a chromium binary: /usr/bin/chromium (Debian package
`chromium`), $FICO_CHROMIUM, or playwright's own download. Skipped, with the reason, without them.
Run only these tests with `pytest -m browser`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

MALICIOUS_NAME = '<img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2;alert("pwned")</script>'


def _chromium() -> str | None:
    for candidate in (
        os.environ.get("FICO_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None  # playwright's own browser, if `playwright install chromium` was run


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs the playwright Python package (pip install playwright)"
    )
    manager = sync_api.sync_playwright().start()
    executable = _chromium()
    try:
        browser = manager.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
    except Exception as exc:
        manager.stop()
        pytest.skip(
            f"no usable chromium (install Debian's `chromium` or set FICO_CHROMIUM): {str(exc).splitlines()[0]}"
        )
    yield browser
    browser.close()
    manager.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from fico_registry.data import synthetic
    from fico_registry.leaderboard import build_leaderboard, make_submission

    root = tmp_path_factory.mktemp("browser")
    corpus = synthetic(n_images=20, seed=13, root=root / "corpus", split="test")
    rng = np.random.default_rng(0)
    img = rng.standard_normal((corpus.n_images, 16)).astype(np.float32)
    subs = root / "submissions"

    def texts(noise: float) -> np.ndarray:
        return (img[corpus.caption_to_image] + noise * rng.standard_normal((corpus.n_captions, 16))).astype(np.float32)

    make_submission(
        corpus, "fine grained", subs / "fg", images=img, texts=texts(0.8), model={"family": "fg"}, device="cpu"
    )
    codes_txt = np.where(texts(1.5) >= 0, 1, -1).astype(np.int8)
    make_submission(
        corpus,
        "hashing",
        subs / "cg",
        images=np.where(img >= 0, 1, -1).astype(np.int8),
        texts=codes_txt,
        measure="hamming",
        model={"family": "cg"},
        device="cpu",
    )
    make_submission(corpus, "pretrained", subs / "vlp", i2t=img @ texts(0.3).T, model={"family": "vlp"}, device="cpu")
    make_submission(
        corpus,
        MALICIOUS_NAME,
        subs / "evil",
        images=img,
        texts=texts(2.5),
        model={"description": '<a href="javascript:alert(3)">click me</a>'},
        submitter="<script>alert(4)</script>",
        device="cpu",
    )
    result = build_leaderboard(subs, [corpus], root / "site")
    assert len(result.accepted) == 4, [v.reasons for v in result.rejected]
    return next(iter(result.pages.values()))


@pytest.fixture
def page(browser, site):
    page = browser.new_page()
    events: dict[str, list[str]] = {"dialogs": [], "errors": []}

    def on_dialog(dialog) -> None:
        events["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: events["errors"].append(str(exc)))
    page.on("console", lambda msg: events["errors"].append(msg.text) if msg.type == "error" else None)
    page.goto(site.as_uri())
    page.events = events  # type: ignore[attr-defined]
    yield page
    page.close()


def column(page, key: str) -> list[str]:
    """The data-sort values of column `key` in the order the rows are shown (hidden rows left out)."""
    return page.evaluate(
        """(key) => {
            const ths = Array.from(document.querySelectorAll('#board thead tr.columns th'));
            const index = ths.findIndex(th => th.dataset.key === key);
            return Array.from(document.querySelectorAll('#board tbody tr'))
                .filter(row => !row.hidden)
                .map(row => row.cells[index].getAttribute('data-sort'));
        }""",
        key,
    )


def test_page_loads_from_a_file_url(page, site) -> None:
    assert page.url.startswith("file://")
    assert "synthetic" in page.title()
    assert page.locator("#board tbody tr").count() == 4
    assert page.text_content("#shown-count") == "4 of 4 entries shown"  # the script ran (CSP allowed it)
    images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert images == [True, True]  # both plots render from their inline data
    assert page.events["errors"] == []  # no CSP violations, no script errors


def test_sorting(page) -> None:
    page.click('th[data-key="t2i R@1"] button')
    values = [float(v) for v in column(page, "t2i R@1")]
    assert values == sorted(values, reverse=True)  # best first
    assert page.get_attribute('th[data-key="t2i R@1"]', "aria-sort") == "descending"
    page.click('th[data-key="t2i R@1"] button')
    values = [float(v) for v in column(page, "t2i R@1")]
    assert values == sorted(values)
    page.click('th[data-key="name"] button')
    names = column(page, "name")
    assert names == sorted(names, key=str.lower)
    assert page.get_attribute('th[data-key="t2i R@1"]', "aria-sort") is None
    page.click('th[data-key="bytes_img"] button')  # smaller is better; similarity entries have none: last
    sizes = column(page, "bytes_img")
    assert sizes[-1] == "" and [float(s) for s in sizes[:-1]] == sorted(float(s) for s in sizes[:-1])


def test_filtering(page) -> None:
    page.uncheck('input[name="family"][value="cg"]')
    assert "cg" not in column(page, "family") and len(column(page, "family")) == 3
    assert page.text_content("#shown-count") == "3 of 4 entries shown"
    page.uncheck('input[name="output"][value="similarity"]')
    assert sorted(column(page, "output")) == ["continuous", "continuous"]
    page.uncheck('input[name="family"][value="unknown"]')
    assert column(page, "family") == ["fg"]
    page.check('input[name="family"][value="cg"]')
    page.check('input[name="family"][value="unknown"]')
    page.check('input[name="output"][value="similarity"]')
    assert len(column(page, "family")) == 4


def test_malicious_text_stays_inert(page) -> None:
    page.wait_for_timeout(200)  # give anything injected the chance to run
    assert page.events["dialogs"] == []
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.scripts.length") == 1  # ours
    assert page.locator("#board img, #board script").count() == 0
    names = page.locator("td.model .name").all_text_contents()
    assert MALICIOUS_NAME in names  # shown as text, exactly as submitted
    assert page.locator('a[href^="javascript"]').count() == 0
    assert '<a href="javascript:alert(3)">click me</a>' in page.locator("td.model .desc").all_text_contents()
    assert "<script>alert(4)</script>" in column(page, "submitter")


def test_index_links_to_the_board(browser, site) -> None:
    page = browser.new_page()
    page.goto((site.parent / "index.html").as_uri())
    page.click(f'a[href="{site.name}"]')
    page.wait_for_load_state()
    assert page.url.endswith(site.name)
    assert page.locator("#board tbody tr").count() == 4
    page.close()


def test_the_board_uses_the_page_width(browser, site) -> None:
    page = browser.new_page(viewport={"width": 2400, "height": 900})
    try:
        page.goto(site.as_uri())
        widths = page.evaluate(
            "({table: document.querySelector('#board').getBoundingClientRect().width,"
            " page: document.documentElement.clientWidth})"
        )
        assert widths["table"] >= widths["page"] - 80  # only main's padding around it, no fixed box
    finally:
        page.close()
