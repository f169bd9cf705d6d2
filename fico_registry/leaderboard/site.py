"""Render the static leaderboard: one page per corpus and an index, from jinja2 templates.

Every submitted string (model names, descriptions, links, submitter, folder names, reasons)
reaches the page through jinja2 with autoescaping on; links are kept only when they are
http(s). The pages are self-contained (CSS, JavaScript and plots inline) so they work from a
file:// URL or any static host without a CDN, and a Content-Security-Policy allows only that
inline CSS and JavaScript (by hash): even a missed escape could not run a script.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fico_registry.leaderboard import plots as charts
from fico_registry.leaderboard import standard
from fico_registry.leaderboard.verify import Verdict
from fico_registry.results.record import DIRECTIONS, RunResult, check_http_url

HERE = Path(__file__).parent
FAMILIES = ("vlp", "fg", "cg", "unknown")
OUTPUTS = ("continuous", "binary", "similarity", "cascade", "unknown")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "num"  # num | text
    better: str = "higher"  # which end sorts first on the first click
    title: str = ""


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every {{ value }} is HTML-escaped, attributes included
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe_url"] = safe_url
    return env


def safe_url(value: Any) -> str | None:
    """An http(s) URL, or None: javascript:, data: and anything malformed never become links."""
    if not isinstance(value, str):
        return None
    try:
        return check_http_url(value)
    except ValueError:
        return None


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str]:
    css = (HERE / "static" / "leaderboard.css").read_text(encoding="utf-8")
    js = (HERE / "static" / "leaderboard.js").read_text(encoding="utf-8")
    return css, js


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(css: str, js: str | None) -> str:
    script = _csp_hash(js) if js is not None else "'none'"
    return (
        f"default-src 'none'; style-src {_csp_hash(css)}; script-src {script}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def corpus_facts(corpus: Any) -> dict[str, Any]:
    return {
        "dataset": corpus.name,
        "split": corpus.split,
        "content_hash": corpus.content_hash,
        "n_images": corpus.n_images,
        "n_texts": corpus.n_captions,
        "n_classes": None if corpus.labels is None else int(corpus.labels.shape[1]),
    }


def protocol_facts(corpus: Any, tolerance: float) -> dict[str, Any]:
    has_labels = corpus.labels is not None
    return {
        "ties": standard.TIES,
        "recall_ks": list(standard.RECALL_KS),
        "map_ks": [("N" if k is None else k) for k in standard.MAP_KS] if has_labels else [],
        "map_variant": standard.MAP_VARIANT if has_labels else None,
        "tolerance": tolerance,
    }


def columns(has_labels: bool, judged: Sequence[str] = ()) -> list[tuple[str, list[Column]]]:
    """The table's column groups: instance R@K both ways, RSUM, category mAP@K, judged metrics of each
    judgment set the corpus carries (standard.JUDGED_COLUMNS), costs, submission."""
    groups: list[tuple[str, list[Column]]] = [
        (
            "Model",
            [
                Column("rank", "#", better="lower", title="rank by RSUM"),
                Column("name", "model", "text"),
                Column("family", "family", "text"),
                Column("output", "output", "text"),
                Column("measure", "measure", "text"),
            ],
        ),
        (
            "Image → text",
            [Column(f"i2t R@{k}", f"R@{k}", title=f"image-to-text Recall@{k}, %") for k in standard.RECALL_KS],
        ),
        (
            "Text → image",
            [Column(f"t2i R@{k}", f"R@{k}", title=f"text-to-image Recall@{k}, %") for k in standard.RECALL_KS],
        ),
        ("", [Column("rsum", "RSUM", title="sum of the six R@K, %")]),
    ]
    if has_labels:
        for direction, label in (("i2t", "Category mAP, i2t"), ("t2i", "Category mAP, t2i")):
            groups.append(
                (
                    label,
                    [
                        Column(
                            f"{direction} mAP@{'N' if k is None else k}",
                            f"mAP@{'N' if k is None else k}",
                            title=f"{direction} category mAP@{'N' if k is None else k}, %",
                        )
                        for k in standard.MAP_KS
                    ],
                )
            )
    for name in judged:
        for direction in DIRECTIONS:
            groups.append(
                (
                    f"{name.upper()} {direction}",
                    [
                        Column(f"judged {name} {direction} {key}", key, title=f"{name} judgments, {direction} {key}, %")
                        for key in standard.JUDGED_COLUMNS
                    ],
                )
            )
    groups.append(
        (
            "Costs",
            [
                Column("bytes_img", "B/image", better="lower", title="bytes per image item, from the evidence"),
                Column("bytes_txt", "B/text", better="lower", title="bytes per text item, from the evidence"),
                Column("enc_img", "ms/image", better="lower", title="encode time per image, claimed"),
                Column("enc_txt", "ms/text", better="lower", title="encode time per text, claimed"),
                Column("qt", "query s", better="lower", title="query-time attention / re-rank seconds, claimed"),
            ],
        )
    )
    groups.append(("Submission", [Column("submitter", "by", "text"), Column("date", "date", "text")]))
    return groups


def _pct(value: float | None, digits: int = 2) -> tuple[str, str]:
    if value is None:
        return "–", ""
    return f"{100 * value:.{digits}f}", repr(float(value))


def _plain(value: float | None, fmt: str) -> tuple[str, str]:
    if value is None:
        return "–", ""
    return format(value, fmt), repr(float(value))


def _scalar(value: float | list[float | None] | None) -> float | None:
    """A category metric that is one number (mAP@K); PR11, the one list there, is not."""
    assert not isinstance(value, list)
    return value


def _curve(value: float | list[float | None] | None) -> list[float | None] | None:
    """The PR11 curve of Metrics.category (a list of 11 precisions, or None)."""
    assert value is None or isinstance(value, list)
    return value


def _rank_key(verdict: Verdict) -> tuple[float, str]:
    """Best RSUM first (entries without one last), then by submission folder."""
    assert verdict.result is not None  # only accepted verdicts are ranked
    return -(verdict.result.rsum() or -1.0), verdict.submission


def _per_item_ms(result: RunResult, side: Literal["images", "texts"]) -> float | None:
    cost = result.costs.encode.get(side)
    if cost is None or cost.seconds is None or not cost.items or cost.from_cache:
        return None
    return 1000.0 * cost.seconds / cost.items


def _row(verdict: Verdict, rank: int, has_labels: bool, judged: Sequence[str] = ()) -> dict[str, Any]:
    result = verdict.result
    assert result is not None
    family = result.model.family or "unknown"
    output = result.model.output or "unknown"
    cells: dict[str, tuple[str, str]] = {
        "rank": (str(rank), str(rank)),
        "family": (family.upper() if family != "unknown" else "?", family),
        "output": (output, output),
        "measure": (result.settings.measure, result.settings.measure),
    }
    cascade = result.evidence.cascade if result.evidence is not None else None
    if cascade is not None:  # the first stage's measure is what a reader compares with other entries
        measure = f"cascade ({cascade.first_measure})"
        cells["measure"] = (measure, measure)
    for direction in DIRECTIONS:
        for k in standard.RECALL_KS:
            cells[f"{direction} R@{k}"] = _pct(result.metrics.instance[direction].get(f"R@{k}"))
        if has_labels and result.metrics.category is not None:
            for map_k in standard.MAP_KS:
                key = f"mAP@{'N' if map_k is None else map_k}"
                cells[f"{direction} {key}"] = _pct(_scalar(result.metrics.category[direction].get(key)))
    for name in judged:
        entry = (result.metrics.judged or {}).get(name) or {}
        for direction in DIRECTIONS:
            values: Any = entry.get(direction) or {}
            for key in standard.JUDGED_COLUMNS:
                value = values.get(key)
                cells[f"judged {name} {direction} {key}"] = _pct(value if isinstance(value, int | float) else None)
    rsum = result.rsum()
    cells["rsum"] = _plain(rsum, ".1f")
    cells["bytes_img"] = _plain(verdict.storage.get("images"), "g")
    cells["bytes_txt"] = _plain(verdict.storage.get("texts"), "g")
    cells["enc_img"] = _plain(_per_item_ms(result, "images"), ".3g")
    cells["enc_txt"] = _plain(_per_item_ms(result, "texts"), ".3g")
    qt = result.costs.query_time
    cells["qt"] = _plain(None if qt is None else qt.seconds, ".3g")
    submitter = result.submitter or ""
    cells["submitter"] = (submitter, submitter)
    date = result.date.date().isoformat()
    cells["date"] = (date, result.date.isoformat())
    m = result.model
    return {
        "family": family,
        "output": output,
        "name": m.name,
        "url": safe_url(m.url),
        "description": m.description or "",
        "paper": m.paper or "",
        "plugin": " ".join(p for p in (m.distribution, m.version) if p),
        "checkpoint": (m.checkpoint_sha256 or "")[:12],
        "submission": verdict.submission,
        "cascade": "" if cascade is None else f"{cascade.first} → {cascade.rerank} @{cascade.k}",
        "cells": cells,
    }


def _plot_entries(entries: list[Verdict]) -> list[charts.PlotEntry]:
    out = []
    for v in entries:
        r = v.result
        assert r is not None
        category = r.metrics.category or {}
        out.append(
            charts.PlotEntry(
                label=r.model.name,
                family=r.model.family or "unknown",
                output=r.model.output or "unknown",
                rsum=r.rsum(),
                pr11={d: _curve(category.get(d, {}).get("PR11")) for d in DIRECTIONS},
                bytes_per_item=v.storage.get("images"),
                encode_ms_per_item=_per_item_ms(r, "images"),
            )
        )
    return out


def _figures(ranked: list[Verdict], has_labels: bool) -> list[tuple[str, str, bytes | None]]:
    entries = _plot_entries(ranked)
    return [
        ("pr", "Precision-recall (category level, 11-point)", charts.pr_curves_svg(entries) if has_labels else None),
        ("cost", "Accuracy vs cost", charts.accuracy_cost_svg(entries)),
    ]


def _data_uri(svg: bytes | None) -> str | None:
    return None if svg is None else "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_corpus_page(
    folder: Path,
    slug: str,
    corpus: Any,
    entries: list[Verdict],
    rejected: list[Verdict],
    tolerance: float,
    built_at: datetime,
    *,
    plots: bool = True,
) -> Path:
    has_labels = corpus.labels is not None
    judged = sorted(getattr(corpus, "judgments", None) or {})
    groups = columns(has_labels, judged)
    ranked = sorted(entries, key=_rank_key)
    rows = [_row(v, i + 1, has_labels, judged) for i, v in enumerate(ranked)]
    figures = []
    for name, title, svg in _figures(ranked, has_labels) if plots else ():
        if svg is not None:
            file = Path("plots") / f"{slug}-{name}.svg"
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / file).write_bytes(svg)
            figures.append({"title": title, "src": _data_uri(svg), "file": file.as_posix()})
    css, js = _assets()
    html = (
        _environment()
        .get_template("corpus.html.j2")
        .render(
            css=css,
            js=js,
            csp=content_security_policy(css, js),
            corpus=corpus_facts(corpus),
            protocol=protocol_facts(corpus, tolerance),
            groups=[(label, len(cols)) for label, cols in groups],
            flat_columns=[c for _, cols in groups for c in cols],
            rows=rows,
            figures=figures,
            families=FAMILIES,
            outputs=OUTPUTS,
            rejected=[
                {"submission": v.submission, "reasons": v.reasons, "model": v.claimed.model.name if v.claimed else ""}
                for v in rejected
            ],
            results_file=f"results/{slug}.json",
            built_at=built_at.isoformat(),
            tool_version=_tool_version(),
        )
    )
    return _write(folder / f"{slug}.html", html)


def write_index_page(folder: Path, corpora: list[Any], result: Any, pages: dict[str, Path], built_at: datetime) -> Path:
    css, _ = _assets()
    boards = [
        {
            "facts": corpus_facts(c),
            "href": pages[c.content_hash].name,
            "slug": pages[c.content_hash].stem,
            "entries": sum(1 for v in result.accepted if v.corpus_hash == c.content_hash),
        }
        for c in corpora
    ]
    rejected = [
        {"submission": v.submission, "reasons": v.reasons, "model": v.claimed.model.name if v.claimed else ""}
        for v in result.rejected
    ]
    html = (
        _environment()
        .get_template("index.html.j2")
        .render(
            css=css,
            csp=content_security_policy(css, None),
            boards=boards,
            rejected=rejected,
            built_at=built_at.isoformat(),
            tool_version=_tool_version(),
        )
    )
    return _write(folder / "index.html", html)


def _tool_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fico-registry")
    except metadata.PackageNotFoundError:
        return "unknown"
