"""Report: the evaluator's result — metrics, settings, provenance — as JSON, tables and plots."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPORT_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON-safe: numpy to Python, NaN / inf to None (never NaN in JSON)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class Report:
    """Metrics of one evaluation. Fractions in [0, 1]; ranks 1-based; None where undefined."""

    instance: dict[str, dict[str, float]]
    category: dict[str, dict[str, Any]] | None
    settings: dict[str, Any]
    model: dict[str, Any] | None = None
    corpus: dict[str, Any] | None = None
    costs: dict[str, Any] | None = None
    per_query: dict[str, Any] = field(default_factory=dict, repr=False)  # not serialised
    # judged relevance (judgments=...): name -> {"i2t": metrics, "t2i": metrics, "provenance": ...}
    judged: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "report_version": REPORT_VERSION,
            "instance": self.instance,
            "category": self.category,
            "settings": self.settings,
        }
        for key in ("judged", "model", "corpus", "costs"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return _clean(data)

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(text + "\n")
            tmp.replace(target)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(
            instance=data["instance"],
            category=data.get("category"),
            settings=data.get("settings", {}),
            model=data.get("model"),
            corpus=data.get("corpus"),
            costs=data.get("costs"),
            judged=data.get("judged"),
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Report:
        return cls.from_dict(json.loads(Path(path).read_text()))

    # -- human output --------------------------------------------------------------------------
    def table(self, title: str | None = None):  # -> rich.table.Table
        from rich.table import Table

        name = (self.model or {}).get("name") or self.settings.get("measure", "")
        table = Table(title=title or f"fico report: {name}".strip(), show_lines=False)
        table.add_column("direction")
        inst_keys = list(next(iter(self.instance.values())).keys())
        cat_keys = [k for k in next(iter((self.category or {"_": {}}).values())) if k != "PR11"]
        for key in inst_keys + cat_keys:
            table.add_column(key, justify="right")
        for direction in ("i2t", "t2i"):
            cells = [_fmt(key, self.instance[direction].get(key)) for key in inst_keys]
            if self.category:
                cells += [_fmt(key, self.category[direction].get(key)) for key in cat_keys]
            table.add_row(direction, *cells)
        return table

    def print(self, console: Any = None) -> None:
        console = console or make_console()
        console.print(self.table())
        if self.judged:
            from fico_registry.evaluator.judged_table import judged_table

            console.print(judged_table(self.judged))
        notes = []
        if self.settings.get("ties"):
            notes.append(f"ties={self.settings['ties']}")
        if self.category is not None:
            notes.append(f"map_variant={self.settings.get('map_variant')}")
        notes.append(f"measure={self.settings.get('measure')}")
        console.print("  " + ", ".join(notes) + "  (R@K and mAP in %)", style="dim")

    def plot_pr(self, path: str | os.PathLike, title: str | None = None) -> Path:
        """11-point precision-recall curves of both directions, as PNG or SVG (by suffix)."""
        if not self.category:
            raise ValueError("this report has no category-level metrics (no labels were given)")
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        levels = np.linspace(0, 1, 11)
        fig, ax = plt.subplots(figsize=(4.5, 3.6), dpi=120)
        for direction, style in (("i2t", "-o"), ("t2i", "--s")):
            curve = self.category[direction].get("PR11")
            if curve:
                ax.plot(levels, [np.nan if v is None else v for v in curve], style, label=direction, markersize=3)
        ax.set_xlabel("recall")
        ax.set_ylabel("interpolated precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
        name = (self.model or {}).get("name", "")
        ax.set_title(title or f"11-point PR {name}".strip(), fontsize=10)
        fig.tight_layout()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target)
        plt.close(fig)
        return target


def make_console(**kwargs: Any):  # -> rich.console.Console
    """A rich Console; on pipes and logs 160 columns wide so report tables are not squeezed."""
    from rich.console import Console

    console = Console(**kwargs)
    if not console.is_terminal and "width" not in kwargs:
        console = Console(width=160, **kwargs)
    return console


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if key.startswith(("R@", "mAP")):
        return f"{100 * value:.2f}"
    return f"{value:.1f}" if isinstance(value, float) and not float(value).is_integer() else f"{value:g}"
