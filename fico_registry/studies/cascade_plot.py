"""The cascade's accuracy-cost curve and its summary table, drawn from evaluate_cascade's JSON document.

x: re-ranked pairs per query (symlog: the first stage alone sits at 0); y: R@1, R@10 and mAP@100
(when the corpus has labels), one panel per direction. The curve runs over the cascade's ks; the two
stand-alone models are hollow reference markers: the first stage at 0 pairs, the re-ranker at N.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

METRICS = (("R@1", "instance", "o"), ("R@10", "instance", "s"), ("mAP@100", "category", "^"))
DIRECTIONS = (("i2t", "image -> text"), ("t2i", "text -> image"))


def _value(report: dict[str, Any] | None, block: str, direction: str, metric: str) -> float | None:
    part = (report or {}).get(block) or {}
    value = (part.get(direction) or {}).get(metric)
    return None if value is None else float(value)


def _queries(report: dict[str, Any], direction: str) -> int:
    settings = report["settings"]
    return int(settings["n_images"] if direction == "i2t" else settings["n_texts"])


def _per_query_pairs(entry: dict[str, Any], direction: str) -> float:
    return entry["costs"]["rerank_pairs"][direction] / _queries(entry, direction)


def plot_cascade(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """Accuracy against re-rank cost over k, per direction (PNG or SVG by suffix)."""
    from fico_registry.studies.costs.plots import _pyplot, _save

    plt = _pyplot()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), dpi=120, sharey=True)
    entries = list(doc["by_k"].items())
    for ax, (direction, title) in zip(axes, DIRECTIONS, strict=True):
        xs = [_per_query_pairs(entry, direction) for _, entry in entries]
        n_candidates = _queries(entries[0][1], "t2i" if direction == "i2t" else "i2t")
        for (metric, block, marker), colour in zip(METRICS, colours, strict=False):
            ys = [_value(entry, block, direction, metric) for _, entry in entries]
            if all(y is None for y in ys):
                continue
            ax.plot(xs, ys, "-", marker=marker, color=colour, label=f"cascade {metric}", markersize=4)
            for (key, _), x, y in zip(entries, xs, ys, strict=True):
                if y is not None:
                    ax.annotate(f"k={key}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
            first = _value(doc["first"], block, direction, metric)
            rerank = _value(doc.get("rerank"), block, direction, metric)
            hollow = {"linestyle": "none", "markerfacecolor": "none", "color": colour, "markersize": 8}
            if first is not None:
                ax.plot([0], [first], marker=marker, **hollow)
            if rerank is not None:
                ax.plot([n_candidates], [rerank], marker="D", **hollow)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("re-ranked pairs per query (0: first stage alone; N: re-ranker alone)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8)
    settings = doc.get("settings", {})
    fig.suptitle(f"cascade {settings.get('first', '?')} -> {settings.get('rerank', '?')} "
                 "(hollow: stand-alone models)", fontsize=10)  # fmt: skip
    return _save(fig, path)


def cascade_table(doc: dict[str, Any]) -> Any:
    """A rich table: one row per stand-alone model and per k, with accuracy and costs."""
    from rich.table import Table

    table = Table(title=f"cascade {doc['settings']['first']} -> {doc['settings']['rerank']}")
    columns = ("stage", "pairs i2t", "pairs t2i", "i2t R@1", "i2t R@10", "t2i R@1", "t2i R@10", "mAP@100 i2t/t2i")
    for name in (*columns, "rerank s"):
        table.add_column(name, justify="right")

    def row(label: str, report: dict[str, Any] | None, costs: dict[str, Any] | None) -> None:
        if report is None:
            return
        cells = [f"{100 * v:.2f}" if (v := _value(report, "instance", d, m)) is not None else "n/a"
                 for d in ("i2t", "t2i") for m in ("R@1", "R@10")]  # fmt: skip
        maps = [_value(report, "category", d, "mAP@100") for d in ("i2t", "t2i")]
        map_text = "/".join("n/a" if v is None else f"{100 * v:.2f}" for v in maps)
        pairs = costs["rerank_pairs"] if costs else {"i2t": "-", "t2i": "-"}
        seconds = f"{costs['seconds']['rerank']:.3f}" if costs else "-"
        table.add_row(label, str(pairs["i2t"]), str(pairs["t2i"]), *cells, map_text, seconds)

    row(f"{doc['settings']['first']} alone", doc["first"], None)
    for key, entry in doc["by_k"].items():
        row(f"k={key}", entry, entry["costs"])
    row(f"{doc['settings']['rerank']} alone", doc.get("rerank"), None)
    return table
