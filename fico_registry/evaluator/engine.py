"""The streamed ranking engine: query blocks x all candidates, bounded by a memory budget.

For each block of queries it asks a score source for the (block, n_candidates) scores, then
  - instance statistics without sorting: g (candidates above the best positive), ties t, p;
  - category statistics as tie groups (metrics.Groups): from one top-k when only mAP@K with small
    K is wanted, or from one sort of integer keys (int32 when they fit) that carry the score order and the relevance bit
    together (exact for float32 and integer scores) when mAP@N, PR11 or the dcmh variant need the
    whole ranking.
The full score matrix is never materialised unless a block happens to be all of it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import torch

from fico_registry.errors import MemoryBudgetError, NonFiniteError, OptionError, ShapeError
from fico_registry.evaluator import metrics
from fico_registry.evaluator.similarity import as_tensor, score_block
from fico_registry.runtime.progress import progress_bar as _progress

_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


class ScoreSource(Protocol):
    """Rows of scores for one retrieval direction (queries x candidates)."""

    n_queries: int
    n_candidates: int

    def block(self, start: int, stop: int) -> torch.Tensor: ...

    def cell_bytes(self) -> int:
        """Bytes per (query, candidate) cell the source needs while computing a block."""
        ...


def embedding_cell_bytes(images: torch.Tensor, measure: str) -> int:
    """Bytes per (query, candidate) cell while a block of embedding scores is computed."""
    if measure == "maxsim":
        return 4 * (images.shape[1] + 2)
    if measure == "hamming":
        return 8
    width = 8 if images.dtype == torch.float64 else 4
    return width * (3 if measure == "euclidean" else 2)


@dataclass
class EmbeddingScores:
    """Scores computed on the fly from image and text embeddings (one GEMM per block)."""

    images: torch.Tensor
    texts: torch.Tensor
    measure: str
    query_side: str  # "image" (i2t) or "text" (t2i)
    n_bits: int = 0
    trusted: bool = True  # products of finite embeddings: no NaN scan needed
    fresh_blocks: bool = True  # every block is a new tensor the engine may reuse

    @property
    def n_queries(self) -> int:
        return (self.images if self.query_side == "image" else self.texts).shape[0]

    @property
    def n_candidates(self) -> int:
        return (self.texts if self.query_side == "image" else self.images).shape[0]

    def cell_bytes(self) -> int:
        return embedding_cell_bytes(self.images, self.measure)

    def block(self, start: int, stop: int) -> torch.Tensor:
        if self.query_side == "image":
            return score_block(self.images[start:stop], self.texts, self.measure, query_side="image", n_bits=self.n_bits)
        return score_block(self.images, self.texts[start:stop], self.measure, query_side="text", n_bits=self.n_bits)


@dataclass
class MatrixScores:
    """Rows of a given score matrix (numpy, memmap or torch), optionally read transposed."""

    matrix: object
    transpose: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    name: str = "scores"

    def __post_init__(self) -> None:
        shape = tuple(self.matrix.shape)  # type: ignore[attr-defined]
        if len(shape) != 2:
            raise ShapeError(f"{self.name} must be a 2-d matrix, got shape {shape}")
        self._shape = shape[::-1] if self.transpose else shape

    @property
    def n_queries(self) -> int:
        return self._shape[0]

    @property
    def n_candidates(self) -> int:
        return self._shape[1]

    def cell_bytes(self) -> int:
        return 8

    def block(self, start: int, stop: int) -> torch.Tensor:
        rows = self.matrix[:, start:stop].T if self.transpose else self.matrix[start:stop]  # type: ignore[index]
        block = as_tensor(np.ascontiguousarray(rows) if isinstance(rows, np.ndarray) else rows.contiguous(), self.name)
        return block.to(self.device)


class MatrixColumns:
    """Candidates lo..hi-1 of a MatrixScores direction: only those columns are read."""

    trusted = False
    fresh_blocks = False

    def __init__(self, source: MatrixScores, lo: int, hi: int) -> None:
        self.source, self.lo, self.hi = source, lo, hi

    @property
    def n_queries(self) -> int:
        return self.source.n_queries

    @property
    def n_candidates(self) -> int:
        return self.hi - self.lo

    def cell_bytes(self) -> int:
        return self.source.cell_bytes()

    def block(self, start: int, stop: int) -> torch.Tensor:
        matrix, lo, hi = self.source.matrix, self.lo, self.hi
        rows = matrix[lo:hi, start:stop].T if self.source.transpose else matrix[start:stop, lo:hi]  # type: ignore[index]
        block = as_tensor(np.ascontiguousarray(rows) if isinstance(rows, np.ndarray) else rows.contiguous(), self.source.name)
        return block.to(self.source.device)


def candidate_columns(source: ScoreSource, lo: int, hi: int) -> ScoreSource | None:
    """The same scores restricted to candidates lo..hi-1, or None when the source cannot slice them.

    Embedding blocks keep the image-major GEMM, so a cell is bit-identical in any slice.
    """
    if isinstance(source, EmbeddingScores):
        if source.query_side == "image":
            return replace(source, texts=source.texts[lo:hi])
        return replace(source, images=source.images[lo:hi])
    if isinstance(source, MatrixScores):
        return MatrixColumns(source, lo, hi)
    return None


def checked_block(source: ScoreSource, start: int, stop: int, *, label: str = "", first_candidate: int | None = None) -> tuple[torch.Tensor, float | int]:
    """The source's scores for queries start..stop-1, checked (shape, dtype, NaN / inf), fp16/bf16 as
    float32; and the lowest score of its dtype (the floor a missing positive takes)."""
    scores = source.block(start, stop)
    n_c = source.n_candidates
    if tuple(scores.shape) != (stop - start, n_c):
        raise ShapeError(f"score block has shape {tuple(scores.shape)}, expected {(stop - start, n_c)}")
    if scores.is_floating_point():
        if not getattr(source, "trusted", False) and not bool(torch.isfinite(scores).all()):
            where = "" if first_candidate is None else f" (candidates {first_candidate}..{first_candidate + n_c - 1})"
            raise NonFiniteError(f"{label or 'scores'}: NaN or infinite scores for queries {start}..{stop - 1}{where}")
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()
        return scores, -torch.inf
    if scores.dtype not in _INT_DTYPES:
        raise ShapeError(f"scores must be float or integer, got {scores.dtype}")
    return scores, torch.iinfo(scores.dtype).min


@dataclass
class DirectionStats:
    """Per-query results of one direction: what distributed runs concatenate and reports average."""

    g: np.ndarray
    t: np.ndarray
    p: np.ndarray
    ap: dict[str, np.ndarray] = field(default_factory=dict)  # "mAP@10" -> per-query AP
    pr11: np.ndarray | None = None  # (n_queries, 11), NaN where a query has no relevant item
    relevant: np.ndarray | None = None  # relevant candidates per query


def positives_of_images(caption_to_image: np.ndarray, n_images: int) -> torch.Tensor:
    """(n_images, max captions) caption indices of each image, -1 padded."""
    order = np.argsort(caption_to_image, kind="stable")
    counts = np.bincount(caption_to_image, minlength=n_images)
    width = int(counts.max())
    out = np.full((n_images, width), -1, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.arange(len(order)) - np.repeat(starts, counts)
    out[caption_to_image[order], col] = order
    return torch.from_numpy(out)


def positives_of_texts(caption_to_image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(caption_to_image, dtype=np.int64)[:, None])


def label_relevance(
    query_labels: torch.Tensor,
    candidate_labels: torch.Tensor,
    candidate_map: torch.Tensor | None = None,
    query_map: torch.Tensor | None = None,
) -> LabelRelevance:
    """Relevance = shares at least one label; see LabelRelevance."""
    return LabelRelevance(query_labels, candidate_labels, candidate_map, query_map)


class LabelRelevance:
    """Which candidates share at least one label with each query of a block.

    Captions take their image's labels: query_map / candidate_map index image label rows, so label
    products run over images and captions are gathered (or counted) afterwards. Called as
    relevance(start, stop) it gives the whole (b, n_candidates) bool block (full rankings need
    it); the top-k path asks only for per-query totals and for the relevance of chosen
    candidates, which costs O(b x n_images) and O(b x k) instead of O(b x n_candidates).
    """

    def __init__(
        self,
        query_labels: torch.Tensor,
        candidate_labels: torch.Tensor,
        candidate_map: torch.Tensor | None = None,
        query_map: torch.Tensor | None = None,
        offset: int = 0,
    ) -> None:
        self.query_labels, self.candidate_labels = query_labels, candidate_labels
        self.candidate_map, self.query_map, self.offset = candidate_map, query_map, offset
        self._words: tuple[torch.Tensor, torch.Tensor] | None = None
        self._captions_per_image: torch.Tensor | None = None

    def shifted(self, lo: int) -> LabelRelevance:
        """The same relevance for queries counted from `lo` (a rank's slice of the queries)."""
        return LabelRelevance(self.query_labels, self.candidate_labels, self.candidate_map, self.query_map, self.offset + lo)

    def _rows(self, start: int, stop: int) -> torch.Tensor | slice:
        start, stop = start + self.offset, stop + self.offset
        return slice(start, stop) if self.query_map is None else self.query_map[start:stop]

    def _image_level(self, start: int, stop: int) -> torch.Tensor:
        return (self.query_labels[self._rows(start, stop)] @ self.candidate_labels.T) > 0

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        if self.query_labels.device.type == "cpu":
            # AND of 64-bit label words instead of a label GEMM: several times faster than torch's
            # GEMM + index_select here, and unlike numpy's BLAS it starts no thread pool whose
            # spinning workers would eat the second core the other direction is using
            query_words, candidate_words = (w.numpy() for w in self._label_words())
            rows = self._rows(start, stop)
            query = query_words[rows if isinstance(rows, slice) else rows.numpy()]
            rel = np.zeros((query.shape[0], candidate_words.shape[0]), dtype=bool)
            for word in range(query.shape[1]):
                rel |= (query[:, word, None] & candidate_words[None, :, word]) != 0
            if self.candidate_map is not None:
                rel = np.take(rel, self.candidate_map.numpy(), axis=1)
            return torch.from_numpy(rel)
        rel = self._image_level(start, stop)
        return rel if self.candidate_map is None else torch.index_select(rel, 1, self.candidate_map)

    def totals(self, start: int, stop: int) -> torch.Tensor:
        """Relevant candidates per query, (b,) int64."""
        rel = self._image_level(start, stop)
        if self.candidate_map is None:
            return rel.sum(1)
        if self._captions_per_image is None:
            counts = torch.bincount(self.candidate_map, minlength=self.candidate_labels.shape[0])
            self._captions_per_image = counts.to(torch.float64)
        return (rel.to(torch.float64) @ self._captions_per_image).round().to(torch.int64)  # integers, exact in float64

    def _label_words(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._words is None:
            self._words = (_as_words(self.query_labels), _as_words(self.candidate_labels))
        return self._words

    def at(self, start: int, stop: int, index: torch.Tensor) -> torch.Tensor:
        """Relevance of candidates `index` (b, m) of queries start..stop-1, (b, m) bool."""
        query_words, candidate_words = self._label_words()
        rows = query_words[self._rows(start, stop)]
        columns = index if self.candidate_map is None else self.candidate_map[index]
        return ((candidate_words[columns] & rows[:, None, :]) != 0).any(-1)

    def count_where(self, start: int, stop: int, mask: torch.Tensor, max_pairs: int = 1 << 20, first_column: int = 0) -> torch.Tensor:
        """Relevant candidates among those where `mask` is True, per query, (b,) int64.

        `mask` covers candidates first_column.. (all of them by default).
        """
        query_words, candidate_words = self._label_words()
        query_rows = query_words[self._rows(start, stop)]
        per_row = np.cumsum(mask.sum(1).cpu().numpy())
        out = torch.zeros(mask.shape[0], dtype=torch.int64, device=mask.device)
        first = 0
        while first < mask.shape[0]:  # rows in chunks of about max_pairs marked cells (ties can be wide)
            done = per_row[first - 1] if first else 0
            last = max(first + 1, int(np.searchsorted(per_row, done + max_pairs, side="right")))
            rows, cols = mask[first:last].nonzero(as_tuple=True)
            cols = cols + first_column
            if self.candidate_map is not None:
                cols = self.candidate_map[cols]
            hit = ((query_rows[first:last][rows] & candidate_words[cols]) != 0).any(-1)
            out[first:last] = torch.bincount(rows[hit], minlength=last - first)
            first = last
        return out


class MatrixRelevance:
    """Relevance given whole, as a bool (n_queries, n_candidates) matrix; the interface of LabelRelevance."""

    def __init__(self, relevant: torch.Tensor, offset: int = 0) -> None:
        self.relevant, self.offset = relevant, offset

    def shifted(self, lo: int) -> MatrixRelevance:
        return MatrixRelevance(self.relevant, self.offset + lo)

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        return self.relevant[start + self.offset : stop + self.offset]

    def totals(self, start: int, stop: int) -> torch.Tensor:
        return self(start, stop).sum(1)

    def at(self, start: int, stop: int, index: torch.Tensor) -> torch.Tensor:
        return self(start, stop).gather(1, index)

    def count_where(self, start: int, stop: int, mask: torch.Tensor, first_column: int = 0) -> torch.Tensor:
        return (mask & self(start, stop)[:, first_column : first_column + mask.shape[1]]).sum(1)


def _as_words(labels: torch.Tensor) -> torch.Tensor:
    """Multi-hot rows (n, n_classes) as bit sets (n, words) of int64, for AND-and-test relevance."""
    bits = np.packbits(labels.detach().cpu().numpy() > 0, axis=1, bitorder="little")
    bits = np.pad(bits, ((0, 0), (0, (-bits.shape[1]) % 8)))
    return torch.from_numpy(np.ascontiguousarray(bits).view(np.int64)).to(labels.device)


def order_keys(scores: torch.Tensor) -> torch.Tensor:
    """int keys whose ascending order is the descending score order; equal scores, equal keys."""
    if scores.dtype in _INT_DTYPES:
        return -scores.to(torch.int64)
    if scores.dtype == torch.float64:
        raise TypeError("float64 scores use the argsort path")
    x = scores.to(torch.float32) + 0.0  # -0.0 -> +0.0 so both zeros tie
    bits = x.view(torch.int32)
    mono = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # order-preserving int32 image of the float
    return (~mono).to(torch.int64)


def _narrow_bound(scores: torch.Tensor) -> float:
    return 2.0 if scores.is_floating_point() else float(1 << 30)


def _fits_32bit_keys(scores: torch.Tensor) -> bool:
    """Whether 2 * order_key + relevant fits an int32 exactly, so the row sorts move half the bytes.

    Float32 scores with |s| < 2 (cosine, normalised dot products) leave the top exponent bit of
    their order-preserving int32 image unused; integer scores need |s| < 2**30. Anything else
    keeps int64 keys.
    """
    if scores.numel() == 0:
        return True
    low, high = torch.aminmax(scores)
    bound = _narrow_bound(scores)
    return -bound < float(low) and float(high) < bound


def _composite_keys_cpu(scores: torch.Tensor, rel: torch.Tensor, consume: bool = False, narrow: bool = False) -> np.ndarray:
    """2 * order_key + relevant, built with in-place numpy passes (int32 when narrow, else int64).

    consume=True lets it overwrite a float32 `scores` block the engine owns (saves a copy);
    blocks that may share memory with the caller's arrays are copied first.
    """
    if scores.dtype in _INT_DTYPES:
        keys = scores.numpy().astype(np.int32 if narrow else np.int64)
        np.negative(keys, out=keys)
    else:
        x = scores.numpy() if scores.dtype == torch.float32 and consume else scores.numpy().astype(np.float32, copy=True)
        x += 0.0  # -0.0 -> +0.0 so both zeros tie
        bits = x.view(np.int32)
        sign = bits >> 31
        sign &= 0x7FFFFFFF
        bits ^= sign  # order-preserving int32 image of the float
        np.invert(bits, out=bits)  # ascending key = descending score
        keys = bits if narrow else bits.astype(np.int64)  # narrow: |s| < 2 keeps it in 31 bits
    np.left_shift(keys, 1, out=keys)
    np.bitwise_or(keys, rel.numpy().view(np.uint8), out=keys)
    return keys


def _sorted_keys_with_relevance(scores: torch.Tensor, rel: torch.Tensor, consume: bool = False) -> np.ndarray:
    """Rows sorted best-first as integer keys 2*order + relevant (int32 when they fit), on the CPU."""
    if scores.dtype == torch.float64:
        # 64-bit scores leave no spare bit: rank them exactly by argsort, then pack a dense rank
        order = torch.argsort(-scores.cpu(), dim=1, stable=True)
        s_sorted = torch.gather(scores.cpu(), 1, order)
        change = torch.ones_like(s_sorted, dtype=torch.bool)
        change[:, 1:] = s_sorted[:, 1:] != s_sorted[:, :-1]
        dense = torch.cumsum(change, dim=1).to(torch.int64)
        return (dense * 2 + torch.gather(rel.cpu(), 1, order).to(torch.int64)).numpy()
    if scores.device.type == "cuda":
        keys = order_keys(scores) * 2 + rel.to(torch.int64)
        return torch.sort(keys, dim=1).values.cpu().numpy()
    keys = _composite_keys_cpu(scores, rel, consume, narrow=_fits_32bit_keys(scores))
    keys.sort(axis=1)  # numpy's vectorised in-place sort is several times faster than torch's on CPU
    return keys


def groups_from_sorted(keys: np.ndarray, n_candidates: int, prefix_of: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> metrics.Groups:
    """Tie groups with relevant items from rows of sorted composite keys (2 * order + relevant).

    Every relevant item starts as a single-item group; the items that tie with a neighbour are
    then folded into the group of their tie run (represented by the run's first relevant item),
    so only the (usually few) runs of tied scores are examined one by one. When `keys` holds
    only a top-k prefix of each row, prefix_of = (n_last, r_last, relevant) gives, over the
    whole row, the size and relevant count of the prefix's last tie group (it may run past the
    prefix) and the relevant total.
    """
    b, width = keys.shape
    size = keys.dtype.itemsize
    # the relevance bit is bit 0 of each little-endian key: read one byte per key, as bools
    # (numpy's nonzero is several times faster on bool than on uint8)
    if sys.byteorder == "little":
        is_rel = (np.ascontiguousarray(keys).view(np.uint8)[:, ::size] & 1).view(bool)
    else:
        is_rel = (keys & 1).astype(bool)
    counts = np.count_nonzero(is_rel, axis=1).astype(np.int64)
    pos = np.flatnonzero(is_rel)  # relevant items, in rank order within each row
    first = np.cumsum(counts) - counts
    row = np.repeat(np.arange(b, dtype=np.int64), counts)
    col = pos - np.repeat(np.arange(b, dtype=np.int64) * width, counts)
    rank_in_row = np.arange(len(pos), dtype=np.int64) - np.repeat(first, counts)  # relevant items above each one
    relevant = counts if prefix_of is None else np.asarray(prefix_of[2], dtype=np.int64)
    # positions whose score equals the previous one's (neighbours differ at most in the rel bit)
    tied_flat = np.zeros(b * width + 1, dtype=bool)  # one spare slot: the successor of the very last item
    tied = tied_flat[:-1].reshape(b, width)
    unsigned = np.uint32 if size == 4 else np.uint64
    np.less_equal(np.bitwise_xor(keys[:, 1:], keys[:, :-1]).view(unsigned), 1, out=tied[:, 1:])
    tie_pos = np.flatnonzero(tied)
    if len(tie_pos) == 0 and prefix_of is None:
        ones = np.ones(len(pos), dtype=np.int64)
        return metrics.Groups(row, col, ones, ones, rank_in_row, relevant, n_candidates)
    # runs of ties: [start, end] with every position after start tied to its predecessor
    breaks = np.flatnonzero(np.diff(tie_pos) != 1)
    run_start = np.concatenate([tie_pos[:1], tie_pos[breaks + 1]]) - 1
    run_end = np.concatenate([tie_pos[breaks], tie_pos[-1:]])
    # a relevant item is in a run when it ties with its predecessor or its successor (the
    # successor of a row's last item is the next row's first, never tied)
    in_run_ok = tied_flat[pos] | tied_flat[pos + 1]
    if prefix_of is not None:
        # every row's last group must be a run (it may continue past the prefix), even of size 1
        last_start = np.arange(b, dtype=np.int64) * width + width - 1
        covered = np.searchsorted(run_end, last_start, side="left")
        has_run = np.zeros(b, dtype=bool)
        if len(run_end):
            has_run = (covered < len(run_end)) & (run_end[np.minimum(covered, len(run_end) - 1)] == last_start)
        extra = last_start[~has_run]
        order = np.argsort(np.concatenate([run_start, extra]), kind="stable")
        run_start = np.concatenate([run_start, extra])[order]
        run_end = np.concatenate([run_end, extra])[order]
        in_run_ok |= col == width - 1
    n_run = run_end - run_start + 1
    run_items = np.flatnonzero(in_run_ok)
    in_run = np.searchsorted(run_start, pos[run_items], side="right") - 1  # each such item's run
    r_run = np.bincount(in_run, minlength=len(run_start)).astype(np.int64)
    if prefix_of is not None:
        n_last, r_last = prefix_of[0], prefix_of[1]
        last = run_end % width == width - 1
        run_row = run_start[last] // width
        n_run[last] = n_last[run_row]
        r_run[last] = r_last[run_row]
    # each run is represented by its first relevant item; its other items leave
    opens = np.ones(len(run_items), dtype=bool)
    opens[1:] = in_run[1:] != in_run[:-1]
    heads, head_run = run_items[opens], in_run[opens]
    n_item = np.ones(len(pos), dtype=np.int64)
    r_item = np.ones(len(pos), dtype=np.int64)
    n_item[heads] = n_run[head_run]
    r_item[heads] = r_run[head_run]
    col[heads] = run_start[head_run] - row[heads] * width
    keep = np.ones(len(pos), dtype=bool)
    keep[run_items[~opens]] = False
    arrays = [row, col, n_item, r_item, rank_in_row]
    if not keep.all():
        arrays = [x[keep] for x in arrays]
    if prefix_of is not None:
        # a row's last run may hold relevant items only past the prefix: it has no item here
        orphan = np.ones(len(run_start), dtype=bool)
        orphan[head_run] = False
        orphan &= r_run > 0
        if orphan.any():
            o_row = run_start[orphan] // width
            at = np.cumsum(np.bincount(arrays[0], minlength=b))[o_row]  # after the row's other groups
            extra_values = [o_row, run_start[orphan] - o_row * width, n_run[orphan], r_run[orphan], counts[o_row]]
            arrays = [np.insert(x, at, v) for x, v in zip(arrays, extra_values, strict=True)]
    g_row, g_col, g_n, g_r, g_rb = arrays
    return metrics.Groups(g_row, g_col, g_n, g_r, g_rb, relevant, n_candidates)


def default_memory_budget(device: torch.device) -> int:
    """A safe share of free memory: half the free GPU memory, or a quarter of available RAM (<= 4 GiB, split among this host's torchrun ranks)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        available = 8 << 30
    # ranks of one torchrun job on this host share its RAM
    try:
        local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_ranks = 1
    return int(min(available * 0.25, 4 << 30) / local_ranks)


def parse_budget(budget: int | str | None, device: torch.device) -> int:
    if budget is None:
        return default_memory_budget(device)
    if isinstance(budget, str):
        text = budget.strip().upper().replace("IB", "B")
        for suffix, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)):
            if text.endswith(suffix):
                try:
                    return int(float(text[: -len(suffix)]) * scale)
                except ValueError:
                    break
        raise OptionError(f"memory_budget {budget!r} is not a size like '2GB' or '500MB'")
    if budget <= 0:
        raise OptionError("memory_budget must be positive")
    return int(budget)


# Blocks larger than this are no faster, only slower: the per-cell arrays of a bigger block pass
# glibc's 32 MB mmap threshold, so every block pays fresh page faults instead of reusing the heap
# (measured: tie-group extraction 2.5x slower per cell at 28M cells than at 6M; bench_evaluator).
EFFICIENT_BLOCK_CELLS = 1 << 21
MIN_BLOCK_ROWS = 16  # enough rows for the GEMM to stay efficient on very wide rows


def rows_per_block(n_candidates: int, cell_bytes: int, budget: int, full_sort: bool) -> int:
    """Query rows per block: what the memory budget allows, capped at EFFICIENT_BLOCK_CELLS."""
    # scores + keys + sorted keys + relevance + group temporaries (about 8 int64 arrays per cell)
    per_cell = cell_bytes + (72 if full_sort else 12)
    rows = budget // max(1, n_candidates * per_cell)
    if rows < 1:
        need = n_candidates * per_cell
        raise MemoryBudgetError(
            f"one query row needs about {need / 2**20:.0f} MiB but memory_budget is {budget / 2**20:.0f} MiB; "
            "raise memory_budget or drop mAP@N / PR11 (they need whole rows)"
        )
    return int(min(rows, max(MIN_BLOCK_ROWS, EFFICIENT_BLOCK_CELLS // max(1, n_candidates))))


def run_direction(
    source: ScoreSource,
    positives: torch.Tensor,
    relevance: LabelRelevance | None,
    *,
    recall_ks: Sequence[int],
    map_ks: Sequence[int | None],
    map_variant: str,
    ties: str,
    budget: int,
    device: torch.device,
    label: str = "",
    progress: bool | None = None,
    on_block: Callable[[int, int, torch.Tensor], None] | None = None,
) -> DirectionStats:
    """Stream one direction and return per-query statistics.

    on_block(start, stop, scores) sees every checked score block before it is consumed (the
    judged-relevance pass reads them there instead of scoring again); not called when rows are
    split into candidate blocks.
    """
    n_q, n_c = source.n_queries, source.n_candidates
    finite_ks = sorted({int(k) for k in map_ks if k is not None and int(k) < n_c})
    want_category = relevance is not None and len(map_ks) > 0
    full_sort = want_category and (len(finite_ks) < len(map_ks) or map_variant == "dcmh")
    top_k = max(finite_ks) if finite_ks else 0
    try:
        rows = min(n_q, rows_per_block(n_c, source.cell_bytes(), budget, full_sort))
    except MemoryBudgetError:
        if full_sort or candidate_columns(source, 0, 1) is None:
            raise
        # one query row against every candidate does not fit: rank candidate blocks and merge
        return _run_direction_by_candidate_blocks(
            source, positives, relevance, map_ks=map_ks, map_variant=map_variant, ties=ties, budget=budget,
            device=device, label=label, progress=progress, top_k=top_k,
        )  # fmt: skip
    positives = positives.to(device)
    # blocks the source computes itself may be overwritten; others may alias the caller's data
    fresh = bool(getattr(source, "fresh_blocks", False))
    g_all = np.empty(n_q, dtype=np.int64)
    eq_all = np.empty(n_q, dtype=np.int64)
    p_all = np.empty(n_q, dtype=np.int64)
    ap = {_map_name(k, n_c): np.empty(n_q) for k in map_ks} if want_category else {}
    pr = np.empty((n_q, metrics.PR_LEVELS)) if full_sort else None
    relevant = np.empty(n_q, dtype=np.int64) if want_category else None

    with _progress(progress, f"ranking {label}".strip(), n_q) as advance:
        for start in range(0, n_q, rows):
            stop = min(n_q, start + rows)
            scores, floor = checked_block(source, start, stop, label=label)
            if on_block is not None:
                on_block(start, stop, scores)
            pos = positives[start:stop]
            valid = pos >= 0
            pos_scores = scores.gather(1, pos.clamp(min=0))
            pos_scores = torch.where(valid, pos_scores, torch.full_like(pos_scores, floor))
            best = pos_scores.max(dim=1, keepdim=True).values
            p_all[start:stop] = ((pos_scores == best) & valid).sum(1).cpu().numpy()
            if want_category:
                if full_sort:
                    rel = relevance(start, stop)  # type: ignore[misc]
                    keys = _sorted_keys_with_relevance(scores, rel, consume=fresh)
                    groups = groups_from_sorted(keys, n_c)
                    g, eq = _instance_from_sorted(keys, scores, best)
                    pr[start:stop] = metrics.pr11(groups, ties)  # type: ignore[index]
                else:
                    g = (scores > best).sum(1).cpu().numpy()
                    eq = (scores == best).sum(1).cpu().numpy()
                    groups = _groups_top_k(scores, relevance, start, stop, top_k)  # type: ignore[arg-type]
                for k in map_ks:
                    ap[_map_name(k, n_c)][start:stop] = metrics.average_precision(groups, k, map_variant, ties)
                relevant[start:stop] = groups.relevant  # type: ignore[index]
            else:
                g = (scores > best).sum(1).cpu().numpy()
                eq = (scores == best).sum(1).cpu().numpy()
            g_all[start:stop] = g
            eq_all[start:stop] = eq
            advance(stop - start)
    return DirectionStats(g_all, eq_all - p_all, p_all, ap, pr, relevant)


def _run_direction_by_candidate_blocks(
    source: ScoreSource,
    positives: torch.Tensor,
    relevance: LabelRelevance | MatrixRelevance | None,
    *,
    map_ks: Sequence[int | None],
    map_variant: str,
    ties: str,
    budget: int,
    device: torch.device,
    label: str,
    progress: bool | None,
    top_k: int,
) -> DirectionStats:
    """run_direction for rows wider than the budget: query blocks x candidate blocks.

    Two passes over each query block's candidate blocks. The first finds the best positive score
    and merges each block's top k into the running top k; the second counts, against those final
    values, the candidates above / tied with the best positive and the size and relevant count of
    the tie group at position k (it may straddle blocks). Only R@K, MedR, MeanR and mAP@K with K
    below the candidate count come this way (mAP@N and PR11 need whole rows).
    """
    n_q, n_c = source.n_queries, source.n_candidates
    want_category = relevance is not None and len(map_ks) > 0
    per_cell = source.cell_bytes() + 12
    rows = min(n_q, MIN_BLOCK_ROWS)
    while rows > 1 and budget // (rows * per_cell) < 1:
        rows //= 2
    width = min(n_c, budget // (rows * per_cell))
    if width < 1:
        raise MemoryBudgetError(f"memory_budget {budget} B cannot hold even one score; raise memory_budget")
    slices = [(lo, min(n_c, lo + width)) for lo in range(0, n_c, width)]
    columns = [candidate_columns(source, lo, hi) for lo, hi in slices]
    positives = positives.to(device)
    g_all, eq_all, p_all = (np.empty(n_q, dtype=np.int64) for _ in range(3))
    ap = {_map_name(k, n_c): np.empty(n_q) for k in map_ks} if want_category else {}
    relevant = np.empty(n_q, dtype=np.int64) if want_category else None
    with _progress(progress, f"ranking {label} (candidate blocks)".strip(), n_q) as advance:
        for start in range(0, n_q, rows):
            stop = min(n_q, start + rows)
            pos = positives[start:stop]
            valid = pos >= 0
            pos_scores = top_values = top_index = None
            for (lo, hi), part in zip(slices, columns, strict=True):
                scores, floor = checked_block(part, start, stop, label=label, first_candidate=lo)  # type: ignore[arg-type]
                if pos_scores is None:
                    pos_scores = torch.full(pos.shape, floor, dtype=scores.dtype, device=scores.device)
                inside = valid & (pos >= lo) & (pos < hi)
                pos_scores = torch.where(inside, scores.gather(1, (pos - lo).clamp(0, hi - lo - 1)), pos_scores)
                if want_category:
                    values, index = scores.topk(min(top_k, hi - lo), dim=1, largest=True, sorted=True)
                    index = index + lo
                    if top_values is not None:
                        values, index = torch.cat([top_values, values], dim=1), torch.cat([top_index, index], dim=1)
                    top_values, chosen = values.topk(min(top_k, values.shape[1]), dim=1, largest=True, sorted=True)
                    top_index = index.gather(1, chosen)
            best = pos_scores.max(dim=1, keepdim=True).values  # type: ignore[union-attr]
            p_all[start:stop] = ((pos_scores == best) & valid).sum(1).cpu().numpy()
            g = torch.zeros(stop - start, dtype=torch.int64, device=best.device)
            eq, n_last, r_last = g.clone(), g.clone(), g.clone()
            for (lo, _hi), part in zip(slices, columns, strict=True):
                scores, _ = checked_block(part, start, stop, label=label, first_candidate=lo)  # type: ignore[arg-type]
                g += (scores > best).sum(1)
                eq += (scores == best).sum(1)
                if want_category:
                    at_boundary = scores == top_values[:, -1:]  # type: ignore[index]
                    n_last += at_boundary.sum(1)
                    r_last += relevance.count_where(start, stop, at_boundary, first_column=lo)  # type: ignore[union-attr]
            g_all[start:stop] = g.cpu().numpy()
            eq_all[start:stop] = eq.cpu().numpy()
            if want_category:
                rel_top = relevance.at(start, stop, top_index)  # type: ignore[union-attr, arg-type]
                keys = _sorted_keys_with_relevance(top_values, rel_top)  # type: ignore[arg-type]
                totals = relevance.totals(start, stop).cpu().numpy()  # type: ignore[union-attr]
                groups = groups_from_sorted(keys, n_c, prefix_of=(n_last.cpu().numpy(), r_last.cpu().numpy(), totals))
                for k in map_ks:
                    ap[_map_name(k, n_c)][start:stop] = metrics.average_precision(groups, k, map_variant, ties)
                relevant[start:stop] = groups.relevant  # type: ignore[index]
            advance(stop - start)
    return DirectionStats(g_all, eq_all - p_all, p_all, ap, None, relevant)


def _map_name(k: int | None, n_candidates: int) -> str:
    return "mAP@N" if k is None else f"mAP@{k}"


def _instance_from_sorted(keys: np.ndarray, scores: torch.Tensor, best: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """g and the size of the best positive's tie group, by binary search in the sorted keys.

    `scores` is only read for float64 blocks: a consumed float32 block holds the keys by now.
    """
    if scores.dtype == torch.float64:
        s = scores.cpu()
        b = best.cpu()
        return (s > b).sum(1).numpy(), (s == b).sum(1).numpy()
    sorted_keys = torch.from_numpy(keys)
    if keys.dtype != np.int32:
        target = (order_keys(best) * 2).cpu()
        g = torch.searchsorted(sorted_keys, target, side="left").squeeze(1)
        end = torch.searchsorted(sorted_keys, target + 1, side="right").squeeze(1)
        return g.numpy(), (end - g).numpy()
    # narrow keys: a best outside the keys' range (the floor of a query without positives)
    # is below every candidate, or above every one
    b = best.cpu()
    bound = _narrow_bound(b)
    inside = (b > -bound) & (b < bound)
    target = torch.from_numpy(_composite_keys_cpu(torch.where(inside, b, torch.zeros_like(b)), torch.zeros(b.shape, dtype=torch.bool), narrow=True))
    g = torch.searchsorted(sorted_keys, target, side="left")
    end = torch.searchsorted(sorted_keys, target + 1, side="right")
    outside_g = torch.where(b >= bound, 0, keys.shape[1])
    g, eq = torch.where(inside, g, outside_g).squeeze(1), torch.where(inside, end - g, 0).squeeze(1)
    return g.numpy(), eq.numpy()


def _groups_top_k(scores: torch.Tensor, relevance: LabelRelevance, start: int, stop: int, k: int) -> metrics.Groups:
    values, index = scores.topk(k, dim=1, largest=True, sorted=True)
    rel_top = relevance.at(start, stop, index)
    # the last group may run past position k: size and relevant count come from the whole row
    at_boundary = scores == values[:, -1:]
    n_last = at_boundary.sum(1).cpu().numpy()
    r_last = relevance.count_where(start, stop, at_boundary).cpu().numpy()
    keys = _sorted_keys_with_relevance(values, rel_top)
    relevant = relevance.totals(start, stop).cpu().numpy()
    return groups_from_sorted(keys, scores.shape[1], prefix_of=(n_last, r_last, relevant))
