"""Leaderboard plots, drawn at build time with matplotlib as SVG (no JavaScript charting, no CDN).

Model names are untrusted: matplotlib would read `$...$` as mathtext (off: parse_math=False) and
hide legend labels that start with '_' (prefixed with a space). Text is drawn as paths, so an SVG holds no
submitted text as markup at all.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

# one colour per entry (colouring by family made every model of a family look the same): matplotlib's
# tab10, then tab20's light shades, so that neighbours in the ranking differ strongly; beyond 20 they repeat
ENTRY_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)
OUTPUT_MARKERS = {"continuous": "o", "binary": "s", "similarity": "^", "unknown": "x"}
MAX_CURVES = 12  # more lines than this make a PR plot unreadable: the best by RSUM are drawn


@dataclass
class PlotEntry:
    label: str
    family: str
    output: str
    rsum: float | None
    pr11: dict[str, list[float | None] | None]
    bytes_per_item: float | None  # image side, from the evidence
    encode_ms_per_item: float | None  # image side, as claimed


def safe_label(text: str, limit: int = 40) -> str:
    """A model name, shortened, that matplotlib will not hide as a '_' legend label."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return " " + text if text.startswith("_") else text


def entry_colours(entries: list[PlotEntry]) -> dict[int, str]:
    """id(entry) -> colour, by rank (RSUM, best first; then label), the same in every plot of a page."""
    ranked = sorted(entries, key=lambda e: (-(e.rsum or 0.0), e.label))
    return {id(entry): ENTRY_COLOURS[i % len(ENTRY_COLOURS)] for i, entry in enumerate(ranked)}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    with plt.rc_context({"svg.hashsalt": "fico-leaderboard", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    return buffer.getvalue()


def pr_curves_svg(entries: list[PlotEntry]) -> bytes | None:
    """11-point interpolated precision-recall curves, one panel per direction."""
    drawn = [e for e in entries if any(e.pr11.get(d) for d in ("i2t", "t2i"))]
    if not drawn:
        return None
    colours = entry_colours(entries)
    drawn = sorted(drawn, key=lambda e: -(e.rsum or 0.0))[:MAX_CURVES]
    plt = _pyplot()
    levels = [i / 10 for i in range(11)]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.0), dpi=100, sharey=True)
    for ax, direction, title in zip(axes, ("i2t", "t2i"), ("image → text", "text → image"), strict=True):
        for entry in drawn:
            curve = entry.pr11.get(direction)
            if not curve:
                continue
            values = [float("nan") if v is None else v for v in curve]
            ax.plot(
                levels,
                values,
                marker=OUTPUT_MARKERS.get(entry.output, "x"),
                markersize=3,
                linewidth=1.2,
                color=colours[id(entry)],
                label=safe_label(entry.label),
            )
        ax.set_title(f"category-level PR, {title}", fontsize=10)
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("interpolated precision")
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    legend = axes[1].legend(list(handles.values()), list(handles), fontsize=7, loc="upper right", framealpha=0.8)
    for text in legend.get_texts():
        text.set_parse_math(False)
    fig.tight_layout()
    return _svg(fig)


def accuracy_cost_svg(entries: list[PlotEntry]) -> bytes | None:
    """RSUM against storage per item (verified) and against encode time per item (claimed)."""
    panels = [
        ("bytes_per_item", "bytes per image item (from the evidence)"),
        ("encode_ms_per_item", "encode ms per image (claimed by the submitter)"),
    ]
    if not any(e.rsum is not None and any(getattr(e, attr) for attr, _ in panels) for e in entries):
        return None
    colours = entry_colours(entries)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.0), dpi=100, sharey=True)
    for ax, (attr, xlabel) in zip(axes, panels, strict=True):
        points = [e for e in entries if e.rsum is not None and getattr(e, attr)]
        for entry in points:
            x = getattr(entry, attr)
            ax.scatter([x], [entry.rsum], s=28, marker=OUTPUT_MARKERS.get(entry.output, "x"), color=colours[id(entry)])
            ax.annotate(
                safe_label(entry.label, 24),
                (x, entry.rsum),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
                parse_math=False,
            )
        if points:
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#777777")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("RSUM (R@1+5+10, both directions, %)")
    # the points carry their names; the legend says what the markers mean
    handles = [plt.Line2D([], [], linestyle="", marker=m, color="#444444", label=o) for o, m in OUTPUT_MARKERS.items()]
    legend = axes[1].legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.8)
    for text in legend.get_texts():
        text.set_parse_math(False)
    fig.suptitle("accuracy vs cost", fontsize=10)
    fig.tight_layout()
    return _svg(fig)
