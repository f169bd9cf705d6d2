"""Engine score sources for coarse-to-fine cascades: a first stage, then a re-ranker on each query's top k.

CascadeScores gives the engine, block by block, a ranking in which each query's re-ranked candidates
come first (ordered by the re-ranker's scores, its ties kept) and every other candidate follows in
the first stage's order: the rule of the fusion re-rank's outside_topk="keep".

Ties of the first stage at position k: the whole boundary tie group is re-ranked, i.e. every
candidate whose first-stage score is >= the k-th largest. No arbitrary tie-break decides which
candidates are re-ranked, so the result is one exact ranking and the engine's tie policy applies
to it as to any other (to ties of the re-ranker among re-ranked candidates, and to first-stage
ties in the untouched tail). The pairs this adds beyond k per query are counted in `pairs`.

Pair scorers score only the (query, candidate) pairs asked for, in batches:
  FusionPairs        Reranker.score_pairs on flattened pairs (BLIP-2 / X-VLM ITM)
  CrossAttentionPairs  Scorer.score of one query against a batch of its candidates (SCAN, IMRAM)
  DualPairs          a dual encoder's own measure between a query and its gathered candidates
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol

import numpy as np
import torch

from fico_registry.errors import ModelOutputError, OptionError
from fico_registry.evaluator.query_time import OverFirstStage, take
from fico_registry.evaluator.similarity import score_block
from fico_registry.evaluator.sources import ScoreSource, checked_block


@dataclass
class PairCost:
    """What the re-ranker was asked: calls, pairs, seconds, and the largest number of pairs in one call."""

    calls: int = 0
    pairs: int = 0
    seconds: float = 0.0
    largest_call: int = 0

    def add(self, pairs: int, seconds: float) -> None:
        self.calls += 1
        self.pairs += pairs
        self.seconds += seconds
        self.largest_call = max(self.largest_call, pairs)

    def to_dict(self) -> dict[str, Any]:
        seconds = round(self.seconds, 6)
        return {"calls": self.calls, "pairs": self.pairs, "seconds": seconds, "largest_call": self.largest_call}


class PairScorer(Protocol):
    cost: PairCost

    def score(self, query_side: str, queries: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
        """Scores (P,) of the pairs (queries[i], candidates[i]); queries are images when query_side == "image".

        Pairs come grouped by query (each query's candidates together), as a block's short lists.
        """
        ...


def _timed(cost: PairCost, pairs: int, call: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
    began = time.perf_counter()
    with torch.inference_mode():
        out = call(*args, **kwargs)
    if isinstance(out, torch.Tensor) and out.is_cuda:
        torch.cuda.synchronize(out.device)
    cost.add(pairs, time.perf_counter() - began)
    return out


def _finite(scores: torch.Tensor, name: str, query_side: str, queries: np.ndarray) -> torch.Tensor:
    scores = scores.detach().cpu()
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()
    if not bool(torch.isfinite(scores).all()):
        bad = queries[int((~torch.isfinite(scores)).nonzero()[0, 0])]
        raise ModelOutputError(f"{name} returned NaN or inf for {query_side} query {bad}")
    return scores


def _runs(queries: np.ndarray) -> list[tuple[int, int]]:
    """(lo, hi) of each run of equal consecutive queries."""
    if len(queries) == 0:
        return []
    cuts = np.flatnonzero(np.diff(queries)) + 1
    edges = [0, *cuts.tolist(), len(queries)]
    return list(pairwise(edges))


@dataclass
class _ModelPairs:
    """A model scoring pairs of its own stored image / text features (gathered by index) on device."""

    model: Any
    image_features: Any
    text_features: Any
    device: str | torch.device = "cpu"


@dataclass
class FusionPairs(_ModelPairs):
    """Reranker.score_pairs over the block's flattened pairs, pair_batch at a time (queries mixed)."""

    pair_batch: int = 256
    cost: PairCost = field(default_factory=PairCost)

    def score(self, query_side: str, queries: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
        image_index, text_index = (queries, candidates) if query_side == "image" else (candidates, queries)
        parts = []
        for s in range(0, len(queries), self.pair_batch):
            images = take(self.image_features, image_index[s : s + self.pair_batch], self.device)
            texts = take(self.text_features, text_index[s : s + self.pair_batch], self.device)
            n = min(self.pair_batch, len(queries) - s)
            parts.append(_timed(self.cost, n, self.model.score_pairs, images, texts))
        return _finite(torch.cat(parts), f"{self.model.name}.score_pairs", query_side, queries)


@dataclass
class CrossAttentionPairs(_ModelPairs):
    """Scorer.score of one query against up to pair_batch of its candidates per call: never other pairs."""

    pair_batch: int = 1024
    cost: PairCost = field(default_factory=PairCost)

    def score(self, query_side: str, queries: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
        own = self.image_features if query_side == "image" else self.text_features
        other = self.text_features if query_side == "image" else self.image_features
        parts = []
        for lo, hi in _runs(queries):
            mine = take(own, queries[lo : lo + 1], self.device)
            for s in range(lo, hi, self.pair_batch):
                chunk = take(other, candidates[s : min(hi, s + self.pair_batch)], self.device)
                pair = (mine, chunk) if query_side == "image" else (chunk, mine)
                parts.append(_timed(self.cost, min(hi, s + self.pair_batch) - s, self.model.score, *pair).reshape(-1))
        return _finite(torch.cat(parts), f"{self.model.name}.score", query_side, queries)


@dataclass
class DualPairs:
    """A dual encoder as re-ranker: its measure between a query and its gathered candidates.

    Embeddings are prepared as the engine prepares them (similarity.prepare_embeddings) and scored
    per query with the same image-major product, so a pair's score is the engine's cell.
    """

    images: torch.Tensor
    texts: torch.Tensor
    measure: str
    n_bits: int = 0
    name: str = "dual encoder"
    cost: PairCost = field(default_factory=PairCost)

    def score(self, query_side: str, queries: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
        parts = []
        for lo, hi in _runs(queries):
            q = int(queries[lo])
            index = torch.from_numpy(candidates[lo:hi]).to(self.images.device)
            if query_side == "image":
                images, texts = self.images[q : q + 1], self.texts[index]
            else:
                images, texts = self.images[index], self.texts[q : q + 1]
            block = _timed(
                self.cost, hi - lo, score_block, images, texts, self.measure, query_side=query_side, n_bits=self.n_bits
            )
            parts.append(block.reshape(-1).double())
        return _finite(torch.cat(parts), self.name, query_side, queries)


@dataclass
class IndexScores:
    """A first stage given as search results: each query's `ids` (n_q, depth) with their `scores`.

    Candidates a query's search did not return (ids -1, or beyond depth) tie at the bottom of its
    row (the lowest finite value of the dtype): not retrieved. A search of depth n_candidates by an exact
    index is the whole exact ranking.
    """

    ids: np.ndarray
    scores: np.ndarray
    n_candidates: int
    name: str = "index"
    device: torch.device | str = "cpu"
    fresh_blocks: bool = True

    @property
    def n_queries(self) -> int:
        return self.ids.shape[0]

    def cell_bytes(self) -> int:
        return 8

    def block(self, start: int, stop: int) -> torch.Tensor:
        ids = torch.from_numpy(np.ascontiguousarray(self.ids[start:stop]))
        values = torch.from_numpy(np.ascontiguousarray(self.scores[start:stop]))
        kind = torch.finfo if values.is_floating_point() else torch.iinfo
        floor = kind(values.dtype).min
        out = torch.full((stop - start, self.n_candidates), floor, dtype=values.dtype)
        found = ids >= 0
        rows = torch.arange(stop - start)[:, None].expand_as(ids)
        out[rows[found], ids[found]] = values[found]
        return out.to(self.device)


@dataclass
class CascadeScores(OverFirstStage):
    """One direction of a cascade: the first stage's top k (and its boundary tie group) re-ranked.

    The block is float64: first-stage scores (float32 or integer, exact in float64) below, and the
    re-ranked candidates on top at base + their rank under the re-ranker (integers, so its ties stay
    ties and its order is exact), base = ceil(row max) + 1.
    """

    first: ScoreSource
    pairs: PairScorer
    k: int
    query_side: str  # "image" (i2t) or "text" (t2i)
    label: str = ""
    reranked: int = 0  # (query, candidate) pairs re-ranked so far
    boundary_extra: int = 0  # of which beyond k per query: the boundary tie groups
    screen_seconds: float = 0.0
    fresh_blocks: bool = True
    trusted: bool = True  # checked_block checks the first stage; pair scores are checked as they arrive

    def __post_init__(self) -> None:
        if self.k < 1:
            raise OptionError(f"cascade k must be a positive integer, got {self.k}")

    def cell_bytes(self) -> int:
        return self.first.cell_bytes() + 16  # the float64 output and the re-ranked mask

    def block(self, start: int, stop: int) -> torch.Tensor:
        began = time.perf_counter()
        first, _ = checked_block(self.first, start, stop, label=f"{self.label} first stage")
        device = first.device  # the engine's; the list bookkeeping below is small and runs on the CPU
        first = first.cpu().double()
        k = min(self.k, first.shape[1])
        kth = first.topk(k, dim=1).values[:, -1:]
        chosen = first >= kth  # the top k and every candidate tied with the k-th
        self.screen_seconds += time.perf_counter() - began
        counts = chosen.sum(1)
        self.reranked += int(counts.sum())
        self.boundary_extra += int((counts - k).sum())
        width = int(counts.max())
        fused = torch.full((stop - start, width), -torch.inf, dtype=torch.float64)
        rows, cols = chosen.nonzero(as_tuple=True)  # row-major: each row's candidates together
        offsets = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(rows)) - offsets[rows]  # position inside the row's short list
        scores = self.pairs.score(self.query_side, (rows + start).numpy(), cols.numpy())
        fused[rows, slot] = scores.double()
        # rank under the re-ranker: how many re-ranked candidates of the row beat each (ties equal)
        ascending = fused.sort(dim=1).values
        beaten_by = width - torch.searchsorted(ascending, fused, right=True)
        base = torch.ceil(first.amax(dim=1, keepdim=True)) + 1
        lifted = base + (width - beaten_by).double()
        in_row = torch.arange(width)[None, :] < counts[:, None]
        out = first
        out[rows, cols] = lifted[in_row]
        return out.to(device)


@dataclass
class RecordingPairs:
    """A pair scorer that keeps every (query, candidate, score) it returns: a cascade's sparse evidence."""

    inner: Any
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def cost(self) -> PairCost:
        return self.inner.cost

    @cost.setter
    def cost(self, value: PairCost) -> None:
        self.inner.cost = value

    def score(self, query_side: str, queries: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
        scores = self.inner.score(query_side, queries, candidates)
        self.parts.append((queries.copy(), candidates.copy(), scores.double().numpy().copy()))
        return scores

    def arrays(self) -> dict[str, np.ndarray]:
        """{"queries", "candidates", "scores"}: flat arrays, one entry per scored pair."""
        if not self.parts:
            return {"queries": np.zeros(0, np.int64), "candidates": np.zeros(0, np.int64), "scores": np.zeros(0)}
        names = ("queries", "candidates", "scores")
        return {name: np.concatenate([p[i] for p in self.parts]) for i, name in enumerate(names)}


@dataclass
class SparsePairs:
    """Re-ranker scores given as evidence (flat queries / candidates / scores): looked up, never computed.

    Recomputing a cascade from its evidence asks for exactly the pairs its first stage selects; a pair
    the evidence lacks is an error, so evidence cannot leave out pairs it should have scored.
    """

    queries: np.ndarray
    candidates: np.ndarray
    scores: np.ndarray
    n_candidates: int
    name: str = "evidence"
    cost: PairCost = field(default_factory=PairCost)

    def __post_init__(self) -> None:
        from fico_registry.errors import DataFormatError

        q, c, s = (np.asarray(a) for a in (self.queries, self.candidates, self.scores))
        if not (q.ndim == c.ndim == s.ndim == 1 and len(q) == len(c) == len(s)):
            raise DataFormatError(f"{self.name}: queries, candidates and scores must be 1-d arrays of one length")
        if len(s) and not np.isfinite(s).all():
            raise DataFormatError(f"{self.name}: re-ranker scores hold NaN or inf")
        keys = q.astype(np.int64) * self.n_candidates + c.astype(np.int64)
        order = np.argsort(keys, kind="stable")
        self._keys, self._scores = keys[order], s[order].astype(np.float64)
        if len(keys) > 1 and (np.diff(self._keys) == 0).any():
            raise DataFormatError(f"{self.name}: a (query, candidate) pair is given twice")

    def score(self, query_side: str, queries: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
        from fico_registry.errors import MissingInputError

        wanted = queries.astype(np.int64) * self.n_candidates + candidates.astype(np.int64)
        at = np.searchsorted(self._keys, wanted).clip(max=max(0, len(self._keys) - 1))
        found = self._keys[at] == wanted if len(self._keys) else np.zeros(len(wanted), dtype=bool)
        if not found.all():
            i = int(np.flatnonzero(~found)[0])
            raise MissingInputError(
                f"{self.name}: no re-ranker score for {query_side} query {queries[i]} and candidate {candidates[i]}, "
                f"which the first stage puts in its short list ({int((~found).sum())} such pairs missing)"
            )
        self.cost.add(len(wanted), 0.0)
        return torch.from_numpy(self._scores[at])
