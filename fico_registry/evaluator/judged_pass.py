"""The judged-relevance pass of an evaluation: every JudgmentSet scored on the engine's own score sources.

The instance / category pass (engine.run_direction) needs no judgments; this pass reads the same
ScoreSource blocks (the same GEMM, the same matrix rows, the t2i matrix when one is given) and
computes fico_registry.evaluator.judged's metrics for every judgment set at once: the judged items
of all sets in a block are counted together, so a block is scored and scanned once whatever the
number of sets. Blocks follow the memory budget like the engine's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fico_registry.data.judgments import DIRECTIONS, Judgments, JudgmentSet, as_judgment_sets
from fico_registry.errors import MemoryBudgetError, OptionError
from fico_registry.evaluator import judged as judged_metrics
from fico_registry.evaluator.budget import EFFICIENT_BLOCK_CELLS
from fico_registry.evaluator.sources import ScoreSource, checked_block

DEFAULT_NDCG_KS = (10,)
# bytes per (query, candidate) cell beyond the scores, when this pass reads blocks itself: the
# top-k selection's working copy and a comparison mask
PASS_CELL_BYTES = 8


class ShardedJudgmentsError(OptionError):
    """Judged metrics were asked for in a torchrun (sharded) evaluation, which does not compute them."""


def check_judgment_options(judgments: Any, ndcg_ks: Sequence[int], gain: str) -> dict[str, JudgmentSet]:
    """Normalise `judgments` (as_judgment_sets) and check ndcg_ks / gain; typed errors say what to fix."""
    for k in ndcg_ks:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise OptionError(f"ndcg_ks must be positive integers, got {k!r}")
    if gain not in judged_metrics.GAINS:
        raise OptionError(f"gain must be one of {', '.join(judged_metrics.GAINS)}; got {gain!r}")
    return as_judgment_sets(judgments)


def refuse_sharded(sets: Mapping[str, JudgmentSet]) -> None:
    if sets:
        raise ShardedJudgmentsError(
            "judged metrics (judgments=...) are not computed in a sharded torchrun evaluation: each rank holds "
            "only its rows of the scores. Run the evaluation in one process (no torchrun) to get them."
        )


class DirectionCollector:
    """Accumulates one direction's judged metrics from score blocks, as the engine streams them.

    Called as on_block(start, stop, scores) by engine.run_direction, so the judged pass reuses the
    ranking's blocks (no second GEMM or matrix read). Blocks arrive once each, in order.
    """

    def __init__(self, present: Mapping[str, Judgments], options: dict[str, Any], n_queries: int) -> None:
        self.present, self.options, self.n_queries = present, options, n_queries
        self.ks = [*options["recall_ks"], *options["ndcg_ks"]]
        self.sums: dict[str, dict[str, float]] = {name: {} for name in present}
        self.totals = dict.fromkeys(present, 0)
        self.covered = 0
        self.seconds = 0.0  # time spent here (inside the engine's threads): settings["judged_seconds"]

    @property
    def complete(self) -> bool:
        return self.covered == self.n_queries

    def wants(self, lo: int, hi: int) -> bool:
        return any(j.indptr[hi] > j.indptr[lo] for j in self.present.values())

    def __call__(self, lo: int, hi: int, scores: Any) -> None:
        started = time.perf_counter()
        try:
            self._add(lo, hi, scores)
        finally:
            self.seconds += time.perf_counter() - started

    def _add(self, lo: int, hi: int, scores: Any) -> None:
        self.covered += hi - lo
        parts = {name: judged.rows(lo, hi) for name, judged in self.present.items()}
        if not any(len(p[0]) for p in parts.values()):
            return
        depth = max(judged_metrics.depth_needed(j, lo, hi, self.ks) for j in self.present.values())
        # one count for the judged items of every set (duplicates across sets are harmless)
        above_all, tied_all = judged_metrics.judged_counts(
            scores,
            np.concatenate([p[0] for p in parts.values()]),
            np.concatenate([p[1] for p in parts.values()]),
            depth,
        )
        start = 0
        for name, (row, _col, grade) in parts.items():
            stop = start + len(row)
            if len(row):
                block, count = judged_metrics.block_sums(
                    row, above_all[start:stop], tied_all[start:stop], grade, hi - lo, **self.options
                )
                self.totals[name] += count
                for metric, value in block.items():
                    self.sums[name][metric] = self.sums[name].get(metric, 0.0) + value
            start = stop

    def results(self) -> dict[str, dict[str, Any]]:
        o = self.options
        return {
            n: judged_metrics.finish(self.sums[n], self.totals[n], o["gain"], o["recall_ks"], o["ndcg_ks"])
            for n in self.present
        }


def collectors(
    sources: Mapping[str, ScoreSource],
    sets: Mapping[str, JudgmentSet],
    *,
    recall_ks: Sequence[int],
    ndcg_ks: Sequence[int],
    ties: str,
    gain: str,
) -> dict[str, DirectionCollector]:
    """One collector per direction that some set judges (shapes checked here, before any work)."""
    options = {"recall_ks": recall_ks, "ndcg_ks": ndcg_ks, "ties": ties, "gain": gain}
    out = {}
    for direction in DIRECTIONS:
        source = sources[direction]
        present = {name: js.direction(direction) for name, js in sets.items() if js.direction(direction) is not None}
        for name, judged in present.items():
            judged.check_shape(source.n_queries, source.n_candidates, f"judgments {name!r} ({direction})")  # type: ignore[union-attr]
        if present:
            out[direction] = DirectionCollector(present, options, source.n_queries)  # type: ignore[arg-type]
    return out


def judged_section(
    sources: Mapping[str, ScoreSource],
    sets: Mapping[str, JudgmentSet],
    filled: Mapping[str, DirectionCollector],
    *,
    budget: int,
) -> dict[str, dict[str, Any]]:
    """report["judged"]: name -> {"i2t": metrics | None, "t2i": metrics | None, "provenance": ...}.

    `filled`: the collectors the engine fed; a direction the engine did not stream whole (rows
    split into candidate blocks) is scored here in its own budget-sized blocks.
    """
    out: dict[str, dict[str, Any]] = {name: {"provenance": js.to_dict()} for name, js in sets.items()}
    for direction in DIRECTIONS:
        collector = filled.get(direction)
        if collector is not None and not collector.complete:
            collector = _score_direction(_unmetered(sources[direction]), collector, budget, direction)
            filled[direction].seconds += collector.seconds
        results = collector.results() if collector is not None else {}
        for name in sets:
            out[name][direction] = results.get(name)
    return out


def _unmetered(source: ScoreSource) -> ScoreSource:
    """A model-backed source (fusion re-rank) with its own cost meter: the report's query-time costs
    stay those of the ranking pass, not doubled by this second scoring pass."""
    if dataclasses.is_dataclass(source) and any(f.name == "cost" for f in dataclasses.fields(source)):
        return dataclasses.replace(source, cost=type(source.cost)())
    return source


def _block_rows(n_queries: int, n_candidates: int, cell_bytes: int, budget: int) -> int:
    per_row = n_candidates * (cell_bytes + PASS_CELL_BYTES)
    if per_row > budget:
        raise MemoryBudgetError(
            f"judged metrics need whole score rows: one row needs about {per_row / 2**20:.1f} MiB but memory_budget "
            f"is {budget / 2**20:.1f} MiB; raise memory_budget"
        )
    return int(max(1, min(n_queries, budget // per_row, max(16, EFFICIENT_BLOCK_CELLS // max(1, n_candidates)))))


def _score_direction(source: ScoreSource, used: DirectionCollector, budget: int, direction: str) -> DirectionCollector:
    """A fresh collector fed from the source itself, block by block (blocks without judged queries skipped)."""
    collector = DirectionCollector(used.present, used.options, used.n_queries)
    rows = _block_rows(source.n_queries, source.n_candidates, source.cell_bytes(), budget)
    for lo in range(0, source.n_queries, rows):
        hi = min(source.n_queries, lo + rows)
        if collector.wants(lo, hi):
            collector(lo, hi, checked_block(source, lo, hi, label=direction)[0])
        else:
            collector.covered += hi - lo
    return collector
