"""Leaderboard plots: one colour per entry (not per family), the same colour for an entry in every plot."""

from __future__ import annotations

import re

from fico_registry.leaderboard import plots


def _entries(n, family="fg"):
    return [
        plots.PlotEntry(
            label=f"model {i}",
            family=family,
            output="continuous",
            rsum=300.0 - i,
            pr11={"i2t": [1.0 - i / 100] * 11, "t2i": [0.9 - i / 100] * 11},
            bytes_per_item=64.0 * (i + 1),
            encode_ms_per_item=1.0 + i,
        )
        for i in range(n)
    ]


def _colours(svg: bytes) -> set[str]:
    return {c.lower() for c in re.findall(rb"#[0-9a-fA-F]{6}", svg) for c in [c.decode()]}


def test_entries_of_one_family_get_distinct_colours():
    entries = _entries(5)
    colours = plots.entry_colours(entries)
    assert len(set(colours.values())) == 5
    assert [colours[id(e)] for e in entries] == list(plots.ENTRY_COLOURS[:5])  # best RSUM first
    for svg in (plots.pr_curves_svg(entries), plots.accuracy_cost_svg(entries)):
        assert set(plots.ENTRY_COLOURS[:5]) <= _colours(svg)


def test_colours_follow_the_ranking_not_the_input_order():
    entries = _entries(3)
    assert plots.entry_colours(entries) == plots.entry_colours(list(reversed(entries)))


def test_more_entries_than_colours_reuse_them():
    colours = plots.entry_colours(_entries(len(plots.ENTRY_COLOURS) + 3))
    assert set(colours.values()) == set(plots.ENTRY_COLOURS)
