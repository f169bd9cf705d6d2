"""The rich table of a report's judged-relevance metrics: one row per judgment set and direction."""

from __future__ import annotations

from typing import Any


def judged_table(judged: dict[str, dict[str, Any]], title: str = "judged relevance"):  # -> rich.table.Table
    from rich.table import Table

    keys: list[str] = []
    for entry in judged.values():
        for direction in ("i2t", "t2i"):
            for key in entry.get(direction) or {}:
                if key not in keys and key != "gain":
                    keys.append(key)
    table = Table(title=title, show_lines=False)
    table.add_column("judgments")
    table.add_column("direction")
    for key in keys:
        table.add_column("queries" if key == "judged_queries" else key, justify="right")
    for name, entry in judged.items():
        for direction in ("i2t", "t2i"):
            values = entry.get(direction)
            if values is None:
                continue
            table.add_row(name, direction, *[_cell(key, values.get(key)) for key in keys])
    return table


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if key == "judged_queries":
        return str(int(value))
    return f"{100 * value:.2f}"  # every judged metric is a fraction in [0, 1]
