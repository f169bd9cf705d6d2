"""Hamming evaluation from per-query distance histograms: no sort, one pass over the pairs.

Hamming distances take only bits + 1 values, so each query's ranking is fully described by two
counts per distance d: candidates at d, and relevant candidates at d. Candidates at one distance
tie, so every distance with a relevant candidate is one tie group of metrics.Groups, with
    a = candidates closer than d, n = candidates at d, r = relevant at d, rb = relevant closer,
and the instance statistics are g = candidates closer than the best positive, g + t + p = the
candidates at its distance. The metrics then come from the same functions in fico_registry.evaluator.metrics
as the sort path (one definition of each metric, every tie policy and AP variant).

Both directions come from the same (image, caption) distances: pair (i, j) adds one count to image
i's histogram and one to caption j's. Relevance (shares a label) is the same for (i, j) in both
directions. The work per pair is XOR + popcount + a counter increment per direction
(fico_registry.evaluator.hamming_kernels with numba; numpy / torch bincount otherwise, also on CUDA).

FICO_HAMMING_PATH=sort sends Hamming codes through the engine's sort-based path instead (the
tests compare both).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from fico_registry.errors import OptionError, ShapeError
from fico_registry.evaluator import metrics
from fico_registry.evaluator.engine import DirectionStats
from fico_registry.evaluator.relevance import _as_words as label_words_of
from fico_registry.evaluator.similarity import _as_words as code_words_of
from fico_registry.evaluator.similarity import hamming_scores
from fico_registry.evaluator.sources import EmbeddingScores

PATH_ENV = "FICO_HAMMING_PATH"
FINISH_CELLS = 1 << 21  # histogram cells turned into groups at a time (bounded temporaries)
TILE_CELLS = 1 << 22  # (image, caption) pairs per tile of the numpy / torch path


def histogram_path_applies(i2t: Any, t2i: Any) -> bool:
    """Whether both directions are the same Hamming codes (and FICO_HAMMING_PATH is not 'sort')."""
    if os.environ.get(PATH_ENV, "histogram").lower() == "sort":
        return False
    return (
        isinstance(i2t, EmbeddingScores) and isinstance(t2i, EmbeddingScores)
        and i2t.measure == "hamming" and t2i.measure == "hamming"
        and i2t.images is t2i.images and i2t.texts is t2i.texts
    )  # fmt: skip


def histogram_stats(
    i2t: EmbeddingScores,
    c2i: np.ndarray,
    labels: torch.Tensor | None,
    *,
    map_ks: Sequence[int | None],
    map_variant: str,
    ties: str,
    budget: int,
) -> dict[str, DirectionStats]:
    """Per-query statistics of both directions, as run_direction gives them, from histograms."""
    codes = Codes(i2t.images, i2t.texts, i2t.n_bits, c2i, labels)
    pos_d = codes.positive_distances()
    best_img = np.full(codes.n_images, codes.n_bits + 1, dtype=np.int64)
    np.minimum.at(best_img, c2i, pos_d)
    p_img = np.bincount(c2i, weights=pos_d == best_img[c2i], minlength=codes.n_images).astype(np.int64)
    want_category = labels is not None and len(map_ks) > 0
    plans = {
        "i2t": (best_img, p_img, codes.n_texts),
        "t2i": (pos_d, np.ones(codes.n_texts, dtype=np.int64), codes.n_images),
    }

    def run(direction: str) -> DirectionStats:
        finish = _Finisher(*plans[direction], map_ks, map_variant, ties, want_category)
        for start, hist in codes.histograms(direction, budget):
            finish.rows(start, hist)
        return finish.stats()

    # the two directions finish in two threads (numpy releases the GIL in its passes), as the engine does
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fico-hamming") as pool:
        futures = {d: pool.submit(run, d) for d in plans}
        return {d: f.result() for d, f in futures.items()}


class Codes:
    """Packed codes of both sides as uint64 words, label sets as uint64 words, and their histograms."""

    def __init__(
        self, images: torch.Tensor, texts: torch.Tensor, n_bits: int, c2i: np.ndarray, labels: torch.Tensor | None
    ) -> None:
        self.images, self.texts, self.n_bits, self.c2i = images, texts, n_bits, c2i
        self.labels = labels
        self.n_images, self.n_texts = images.shape[0], texts.shape[0]
        self.n_bins = 2 * (n_bits + 1)
        self._pair: tuple[np.ndarray, np.ndarray] | None = None
        self._inputs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._lock = threading.RLock()  # _pair_histograms (under it) reads _kernel_inputs (under it)
        from fico_registry.evaluator.hamming_kernels import kernels

        self.kernels = kernels() if images.device.type == "cpu" else None

    def positive_distances(self) -> np.ndarray:
        """Distance of every caption to its own image, (n_texts,) int64."""
        img = code_words_of(self.images.cpu().numpy())[self.c2i]
        txt = code_words_of(self.texts.cpu().numpy())
        return np.bitwise_count(img ^ txt).sum(axis=1, dtype=np.int64)

    def histograms(self, direction: str, budget: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first query, (rows, n_bins) histograms) blocks of one direction, in query order.

        Both directions from one pass when all histograms fit the budget (the second direction
        is then served from memory); otherwise each direction in query blocks.
        """
        n_q = self.n_images if direction == "i2t" else self.n_texts
        parts = self.kernels.threads() if self.kernels is not None else 1
        if (self.n_images * (parts + 1) + self.n_texts) * self.n_bins * 8 <= budget:
            with self._lock:  # the first direction to ask computes both
                if self._pair is None:
                    self._pair = self._pair_histograms(parts)
            yield 0, self._pair[0 if direction == "i2t" else 1]
            return
        rows = max(1, budget // 2 // (self.n_bins * 8))
        for start in range(0, n_q, rows):
            stop = min(n_q, start + rows)
            yield start, self._query_histograms(direction, start, stop, budget)

    def _label_words(self) -> np.ndarray:
        if self.labels is None:
            return np.zeros((self.n_images, 0), dtype=np.uint64)
        return label_words_of(self.labels).cpu().numpy().view(np.uint64)

    def _kernel_inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            if self._inputs is None:
                img = code_words_of(self.images.numpy())
                txt = code_words_of(self.texts.numpy())
                lab = self._label_words()
                self._inputs = img, txt, lab, np.ascontiguousarray(lab[self.c2i])
            return self._inputs

    def _pair_histograms(self, parts: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kernels is None:
            return self._tiled(0, self.n_images, 0, self.n_texts, fill=("i2t", "t2i"))
        img, txt, lab, cap_lab = self._kernel_inputs()
        h_img, h_txt = self.kernels.pair_histograms(
            img, np.ascontiguousarray(txt.T), lab, np.ascontiguousarray(cap_lab.T), self.n_bins, parts
        )
        return h_img.sum(axis=0), h_txt

    def _query_histograms(self, direction: str, start: int, stop: int, budget: int) -> np.ndarray:
        if self.kernels is None:
            if direction == "i2t":
                return self._tiled(start, stop, 0, self.n_texts, fill=("i2t",), budget=budget)[0]
            return self._tiled(0, self.n_images, start, stop, fill=("t2i",), budget=budget)[1]
        img, txt, lab, cap_lab = self._kernel_inputs()
        if direction == "i2t":
            q, c, q_lab, c_lab = img[start:stop], txt, lab[start:stop], cap_lab
        else:
            q, c, q_lab, c_lab = txt[start:stop], img, cap_lab[start:stop], lab
        return self.kernels.query_histograms(
            np.ascontiguousarray(q), np.ascontiguousarray(c.T),
            np.ascontiguousarray(q_lab), np.ascontiguousarray(c_lab.T), self.n_bins,
        )  # fmt: skip

    def _tiled(
        self, i0: int, i1: int, j0: int, j1: int, *, fill: Sequence[str], budget: int | None = None
    ) -> tuple[Any, Any]:
        """numpy / torch path (no numba, or CUDA): tiles of (image, caption) distances, torch.bincount.

        Over images i0..i1-1 x captions j0..j1-1, fills the images' histograms ("i2t" in fill)
        and the captions' ("t2i" in fill).
        """
        want_img, want_txt = "i2t" in fill, "t2i" in fill
        dev = self.images.device
        nb = self.n_bins
        h_img = torch.zeros((i1 - i0) * nb, dtype=torch.int64, device=dev) if want_img else None
        h_txt = torch.zeros((j1 - j0) * nb, dtype=torch.int64, device=dev) if want_txt else None
        cells = TILE_CELLS if budget is None else max(4096, min(TILE_CELLS, budget // 64))
        rows = max(1, min(i1 - i0, cells // max(1, j1 - j0)))
        cols = max(1, min(j1 - j0, cells // rows))
        lab = None if self.labels is None else self.labels.to(dev, torch.float32)
        c2i = torch.from_numpy(self.c2i).to(dev)
        for a in range(i0, i1, rows):
            b = min(i1, a + rows)
            for c in range(j0, j1, cols):
                d = min(j1, c + cols)
                bins = -2 * hamming_scores(self.images[a:b], self.texts[c:d], self.n_bits).to(torch.int64)
                if lab is not None:  # shares a label: a 0/1 product, exact in float32
                    bins += (lab[a:b] @ lab[c2i[c:d]].T > 0).to(torch.int64)
                if h_img is not None:
                    offset = (torch.arange(b - a, device=dev) * nb)[:, None]
                    h_img[(a - i0) * nb : (b - i0) * nb] += torch.bincount(
                        (bins + offset).ravel(), minlength=(b - a) * nb
                    )
                if h_txt is not None:
                    offset = (torch.arange(d - c, device=dev) * nb)[None, :]
                    h_txt[(c - j0) * nb : (d - j0) * nb] += torch.bincount(
                        (bins + offset).T.ravel(), minlength=(d - c) * nb
                    )
        shape = (-1, nb)
        return (
            None if h_img is None else h_img.reshape(shape).cpu().numpy(),
            None if h_txt is None else h_txt.reshape(shape).cpu().numpy(),
        )


class _Finisher:
    """Turns blocks of histograms into one direction's DirectionStats (same fields as run_direction)."""

    def __init__(self, best, p, n_candidates, map_ks, map_variant, ties, want_category) -> None:
        n_q = len(best)
        self.best, self.p, self.n_candidates = best, p, n_candidates
        self.map_ks, self.map_variant, self.ties, self.want_category = map_ks, map_variant, ties, want_category
        finite = {int(k) for k in map_ks if k is not None and int(k) < n_candidates}
        # PR11 where the sort path gives it: when it ranks whole rows (mAP@N, or the dcmh variant)
        self.full = want_category and (len(finite) < len(map_ks) or map_variant == "dcmh")
        self.g, self.eq = np.empty(n_q, dtype=np.int64), np.empty(n_q, dtype=np.int64)
        self.ap = {_map_name(k): np.empty(n_q) for k in map_ks} if want_category else {}
        self.pr = np.empty((n_q, metrics.PR_LEVELS)) if self.full else None
        self.relevant = np.empty(n_q, dtype=np.int64) if want_category else None

    def rows(self, start: int, hist: np.ndarray) -> None:
        step = max(1, FINISH_CELLS // hist.shape[1])
        for lo in range(0, hist.shape[0], step):
            self._rows(start + lo, hist[lo : lo + step])

    def _rows(self, start: int, hist: np.ndarray) -> None:
        stop = start + hist.shape[0]
        rel = hist[:, 1::2].astype(np.int64)
        count = hist[:, 0::2] + rel
        before = np.cumsum(count, axis=1) - count  # candidates strictly closer
        rows = np.arange(hist.shape[0])
        best = self.best[start:stop]
        self.g[start:stop] = before[rows, best]
        self.eq[start:stop] = count[rows, best]
        if not self.want_category:
            return
        groups = groups_from_histograms(hist, self.n_candidates)
        total = groups.relevant
        for k in self.map_ks:
            self.ap[_map_name(k)][start:stop] = metrics.average_precision(groups, k, self.map_variant, self.ties)
        if self.pr is not None:
            self.pr[start:stop] = metrics.pr11(groups, self.ties)
        self.relevant[start:stop] = total  # type: ignore[index]

    def stats(self) -> DirectionStats:
        return DirectionStats(self.g, self.eq - self.p, self.p, self.ap, self.pr, self.relevant)


def groups_from_histograms(hist: np.ndarray, n_candidates: int) -> metrics.Groups:
    """The tie groups holding relevant items, from (rows, 2 (bits + 1)) histograms (bin 2 d + relevant).

    Distance d is one tie group: a = candidates closer, n = candidates at d, r = relevant at d,
    rb = relevant closer. Exactly what the sort path reads from sorted rows of -distance scores.
    """
    rel = hist[:, 1::2].astype(np.int64)
    count = hist[:, 0::2] + rel
    before = np.cumsum(count, axis=1) - count
    rel_before = np.cumsum(rel, axis=1) - rel
    row, dist = np.nonzero(rel)  # row-major: rows ascending, then distance ascending = rank order
    return metrics.Groups(
        row, before[row, dist], count[row, dist], rel[row, dist], rel_before[row, dist], rel.sum(axis=1), n_candidates
    )


def _map_name(k: int | None) -> str:
    return "mAP@N" if k is None else f"mAP@{k}"


def hamming_topk(queries: Any, database: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest database codes of each query: (distances int32, indices int64), (n_queries, k).

    queries / database: packed codes (np.packbits rows, uint8, numpy or torch), same width. Rows
    are sorted by distance, ties by index (the faiss fallback orders ties its own way). The numba
    kernel when installed (a threshold kept from the bits + 1 distance counts: one compare per
    pair, like a heap); else faiss.IndexBinaryFlat when installed and the width is whole bytes;
    else blocks of numpy popcounts and torch.topk over (distance, index) keys.
    """
    q, db = (
        np.ascontiguousarray(x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
        for x in (queries, database)
    )
    if q.dtype != np.uint8 or db.dtype != np.uint8 or q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise ShapeError(
            f"hamming_topk takes packed uint8 codes of one width, got {q.dtype}{q.shape} and {db.dtype}{db.shape}"
        )
    if not 1 <= k <= db.shape[0]:
        raise OptionError(f"k must lie in [1, {db.shape[0]}] (the database size), got {k}")
    from fico_registry.evaluator.hamming_kernels import kernels

    compiled = kernels()
    n_dist = 8 * q.shape[1] + 1
    if compiled is not None:
        return compiled.top_k(
            code_words_of(q), np.ascontiguousarray(code_words_of(db).T), int(k), n_dist, compiled.threads()
        )
    try:
        import faiss
    except ImportError:
        return _topk_blocks(q, db, int(k))
    index = faiss.IndexBinaryFlat(8 * q.shape[1])
    index.add(db)
    return index.search(q, int(k))


def _topk_blocks(q: np.ndarray, db: np.ndarray, k: int, cells: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Popcount blocks + torch.topk over unique keys distance * n + index (ties by index, exactly)."""
    n = db.shape[0]
    dist, ids = np.empty((len(q), k), dtype=np.int32), np.empty((len(q), k), dtype=np.int64)
    rows = max(1, cells // n)
    index = torch.arange(n, dtype=torch.int64)
    db_t = torch.from_numpy(db)
    for start in range(0, len(q), rows):
        block = -hamming_scores(torch.from_numpy(q[start : start + rows]), db_t, 8 * q.shape[1]).to(torch.int64)
        keys = torch.topk(block * n + index, k, dim=1, largest=False, sorted=True).values
        dist[start : start + rows] = (keys // n).numpy()
        ids[start : start + rows] = (keys % n).numpy()
    return dist, ids
