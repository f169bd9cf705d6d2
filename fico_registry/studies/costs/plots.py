"""Figures of the cost and search benchmarks (matplotlib, Agg backend: no display needed).

Filled markers are measured; hollow markers joined by dotted lines are predictions of scales
that did not run (DNF). Every function takes the JSON document the benchmark wrote, so figures
can be redrawn from a saved file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(target, bbox_inches="tight")
    _pyplot().close(fig)
    return target


def _models(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in doc.get("models", []) if m.get("status") == "ok"]


def _coloured_models(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Any]]:
    """The measured models, each with its colour of the default cycle (the same model, the same colour)."""
    colours = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    for i, model in enumerate(_models(doc)):
        yield model, colours[i % len(colours)]


def _label(model: dict[str, Any]) -> str:
    config = model.get("config_name")
    return model["name"] + (f" ({config})" if config and config != "default" else "")


def _plot_series(
    ax: Any,
    measured: list[tuple[Any, Any]],
    predicted: list[tuple[Any, Any]],
    colour: Any,
    style: str,
    marker: str,
    label: str,
) -> None:
    """Measured points joined by `style`; predicted (DNF) ones hollow, dotted on from the last measured."""
    if measured:
        xs, ys = zip(*measured, strict=True)
        ax.plot(xs, ys, style, marker=marker, color=colour, label=label, markersize=4)
    if predicted:
        xs, ys = zip(*(measured[-1:] + predicted), strict=True)
        ax.plot(xs, ys, ":", color=colour, linewidth=1)
        px, py = zip(*predicted, strict=True)
        ax.plot(px, py, linestyle="none", marker=marker, markerfacecolor="none", color=colour, markersize=6)


def _log_log(ax: Any, xlabel: str, ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    if ax.lines:
        ax.legend(fontsize=7)


def plot_encode_time(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """Encode wall seconds against items encoded, per model and modality, log-log."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.4), dpi=120)
    for model, colour in _coloured_models(doc):
        for side, key, style, marker in (("images", "encode_images", "-", "o"), ("texts", "encode_texts", "--", "s")):
            measured = [(s[f"n_{side}"], s["seconds"][key]) for s in model["scales"] if s["status"] == "ok"]
            predicted = [
                (s[f"n_{side}"], s["predicted"]["seconds"][key]) for s in model["scales"] if s["status"] == "dnf"
            ]
            _plot_series(ax, measured, predicted, colour, style, marker, f"{_label(model)} {side}")
    _log_log(ax, "items encoded (images or captions)", "encode wall time (s)")
    ax.set_title("Encoding time vs collection size (hollow: predicted, DNF)", fontsize=10)
    return _save(fig, path)


def plot_query_time(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """Query-time work (search, cross-attention or re-rank, both directions) against n_images * n_texts."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.4), dpi=120)
    for model, colour in _coloured_models(doc):
        parts = [k for k in model["extrapolation"] if not k.startswith("encode")]
        measured = [
            (s["n_images"] * s["n_texts"], s["query"]["seconds"]) for s in model["scales"] if s["status"] == "ok"
        ]
        predicted = [
            (s["n_images"] * s["n_texts"], sum(s["predicted"]["seconds"][k] for k in parts))
            for s in model["scales"]
            if s["status"] == "dnf"
        ]
        _plot_series(ax, measured, predicted, colour, "-", "o", f"{_label(model)}: {model['query_kind']}")
    _log_log(ax, "n_images x n_texts", "query-time work, both directions (s)")
    ax.set_title("Search / attention / re-rank time vs collection size", fontsize=10)
    return _save(fig, path)


def plot_storage(doc: dict[str, Any], path: str | os.PathLike, scale: str | None = None) -> Path:
    """GiB of embeddings and of query-time features per model at `scale` (default: 1M/5M)."""
    import numpy as np

    plt = _pyplot()
    models = _models(doc)
    scale = scale or "1000000x5000000"
    names = [_label(m) for m in models]
    emb = np.array([m["storage"]["at"][scale]["embedding_gib"] for m in models], dtype=float)
    att = np.array([m["storage"]["at"][scale]["attention_gib"] for m in models], dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.55 * max(1, len(models))), dpi=120)
    y = np.arange(len(models))
    ax.barh(y - 0.2, np.where(emb > 0, emb, np.nan), height=0.4, label="embeddings / codes")
    ax.barh(y + 0.2, np.where(att > 0, att, np.nan), height=0.4, label="query-time features")
    positive = [v for v in (*emb, *att) if v > 0]
    left, right = (min(positive) / 3, max(positive) * 30) if positive else (1e-3, 1.0)
    for row, (e, a) in enumerate(zip(emb, att, strict=True)):
        for offset, value in ((-0.2, e), (0.2, a)):
            text = f"{value:.3g} GiB" if value > 0 else "none"
            ax.annotate(
                text,
                (value if value > 0 else left, row + offset),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ax.set_xlabel("GiB (exact, from shapes and dtypes)")
    n_img, n_txt = scale.split("x")
    ax.set_title(f"Storage at {int(n_img):,} images / {int(n_txt):,} captions", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def _cost_at_first_scale(model: dict[str, Any]) -> tuple[float, bool] | None:
    """(seconds, measured) at the smallest scale: measured, or predicted when it was DNF."""
    if not model["scales"]:
        return None
    first = model["scales"][0]
    if first["status"] == "ok":
        return first["total_s"], True
    return first["predicted"]["total_s"], False


def plot_accuracy_vs_cost(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """RSUM on the base corpus against time at the first scale and storage at 1M/5M, per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0), dpi=120)
    first = (doc.get("settings", {}).get("scales") or ["?"])[0]
    reference = "1000000x5000000"
    for model in _models(doc):
        accuracy = model.get("accuracy") or {}
        if accuracy.get("status") != "ok":
            continue
        rsum = 100 * accuracy["rsum"]
        cost = _cost_at_first_scale(model)
        if cost is not None:
            seconds, measured = cost
            axes[0].plot([seconds], [rsum], "o", markerfacecolor=None if measured else "none")
            axes[0].annotate(_label(model), (seconds, rsum), xytext=(4, 3), textcoords="offset points", fontsize=7)
        gib = model["storage"]["at"][reference]["total_gib"]
        axes[1].plot([gib], [rsum], "s")
        axes[1].annotate(_label(model), (gib, rsum), xytext=(4, 3), textcoords="offset points", fontsize=7)
    axes[0].set_xlabel(f"time for {first}: encode both sides + query work (s)")
    axes[1].set_xlabel("storage at 1M/5M: embeddings + query-time features (GiB)")
    for ax in axes:
        if ax.lines:
            ax.set_xscale("log")
        ax.set_ylabel("RSUM on the base corpus (%)")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Accuracy vs cost (hollow: predicted, the scale did not run)", fontsize=10)
    return _save(fig, path)


def plot_cost_figures(doc: dict[str, Any], folder: str | os.PathLike, fmt: str = "png") -> list[Path]:
    folder = Path(folder)
    paths = [
        plot_encode_time(doc, folder / f"encode_time.{fmt}"),
        plot_query_time(doc, folder / f"query_time.{fmt}"),
        plot_accuracy_vs_cost(doc, folder / f"accuracy_vs_cost.{fmt}"),
    ]
    if _models(doc):
        paths.append(plot_storage(doc, folder / f"storage.{fmt}"))
    return paths


# -- search study --------------------------------------------------------------------------------
def plot_search_tradeoff(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Recall@k (relative to exhaustive float search) against search time, one panel per k.

    Parameter sweeps (HNSW efSearch, binary IVF nprobe) are drawn as lines through their settings.
    """
    plt = _pyplot()
    ks = [int(k) for k in result["ks"]]
    fig, axes = plt.subplots(1, len(ks), figsize=(4.0 * len(ks), 3.8), dpi=120, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for panel, k in zip(axes[0], ks, strict=True):
        for i, (name, entry) in enumerate(result["indexes"].items()):
            colour = colours[i % len(colours)]
            sweep = entry.get("sweep") or []
            if sweep:
                xs = [p["search_s_by_k"][str(k)] for p in sweep]
                ys = [p["recall"][str(k)] for p in sweep]
                panel.plot(xs, ys, "-", color=colour, linewidth=1, alpha=0.6)
                param = entry.get("sweep_param", "")
                for p, x, y in zip(sweep, xs, ys, strict=True):
                    panel.annotate(
                        f"{p[param]}", (x, y), xytext=(2, -8), textcoords="offset points", fontsize=6, color=colour
                    )
            panel.plot([entry["search_s_by_k"][str(k)]], [entry["recall"][str(k)]], "o", color=colour, label=name)
        panel.set_xscale("log")
        panel.set_ylim(-0.02, 1.05)
        panel.set_xlabel(f"time of search(k={k}), {result['n_queries']:,} queries (s)")
        panel.set_ylabel(f"R@{k} vs exhaustive float search")
        panel.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"{result['n_database']:,} database x {result['n_queries']:,} queries, d={result['dim']}, "
        f"{result['bits']}-bit codes",
        fontsize=10,
    )
    return _save(fig, path)
