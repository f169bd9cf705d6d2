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

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fico_registry.errors import MemoryBudgetError
from fico_registry.evaluator import metrics
from fico_registry.evaluator.block_buffers import BlockBuffers, row_counts
from fico_registry.evaluator.budget import MIN_BLOCK_ROWS, rows_per_block
from fico_registry.evaluator.relevance import LabelRelevance, MatrixRelevance
from fico_registry.evaluator.sources import (
    INT_DTYPES,
    ScoreSource,
    candidate_columns,
    checked_block,
    needs_argsort_keys,
)
from fico_registry.runtime.progress import progress_bar as _progress
from fico_registry.runtime.sizes import format_size


@dataclass
class DirectionStats:
    """Per-query results of one direction: what distributed runs concatenate and reports average."""

    g: np.ndarray
    t: np.ndarray
    p: np.ndarray
    ap: dict[str, np.ndarray] = field(default_factory=dict)  # "mAP@10" -> per-query AP
    pr11: np.ndarray | None = None  # (n_queries, 11), NaN where a query has no relevant item
    relevant: np.ndarray | None = None  # relevant candidates per query


def order_keys(scores: torch.Tensor) -> torch.Tensor:
    """int keys whose ascending order is the descending score order; equal scores, equal keys."""
    if scores.dtype in INT_DTYPES:
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


def _composite_keys_cpu(
    scores: torch.Tensor, rel: torch.Tensor, consume: bool = False, narrow: bool = False
) -> np.ndarray:
    """2 * order_key + relevant, built with in-place numpy passes (int32 when narrow, else int64).

    consume=True lets it overwrite a float32 `scores` block the engine owns (saves a copy);
    blocks that may share memory with the caller's arrays are copied first.
    """
    if scores.dtype in INT_DTYPES:
        keys = scores.numpy().astype(np.int32 if narrow else np.int64)
        np.negative(keys, out=keys)
    else:
        x = (
            scores.numpy()
            if scores.dtype == torch.float32 and consume
            else scores.numpy().astype(np.float32, copy=True)
        )
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
    if needs_argsort_keys(scores):
        # 64-bit scores leave no spare bit: rank them exactly by argsort, then pack a dense rank
        order = torch.argsort(scores.cpu(), dim=1, stable=True, descending=True)
        s_sorted = torch.gather(scores.cpu(), 1, order)
        change = torch.ones_like(s_sorted, dtype=torch.bool)
        change[:, 1:] = s_sorted[:, 1:] != s_sorted[:, :-1]
        dense = torch.cumsum(change, dim=1).to(torch.int64)
        return (dense * 2 + torch.gather(rel.cpu(), 1, order).to(torch.int64)).numpy()
    if scores.device.type == "cuda":
        key_tensor = order_keys(scores) * 2 + rel.to(torch.int64)
        return torch.sort(key_tensor, dim=1).values.cpu().numpy()
    keys = _composite_keys_cpu(scores, rel, consume, narrow=_fits_32bit_keys(scores))
    keys.sort(axis=1)  # numpy's vectorised in-place sort is several times faster than torch's on CPU
    return keys


def groups_from_sorted(
    keys: np.ndarray, n_candidates: int, prefix_of: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
) -> metrics.Groups:
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

    buffers = BlockBuffers()  # the block's scores and masks, reused: no per-block page faults
    with _progress(progress, f"ranking {label}".strip(), n_q) as advance:
        for start in range(0, n_q, rows):
            stop = min(n_q, start + rows)
            scores, floor = checked_block(source, start, stop, label=label, buffers=buffers)
            if on_block is not None:
                on_block(start, stop, scores)
            mask = buffers.get("mask", stop - start, n_c, torch.bool, scores.device)
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
                    g, eq = _above_and_tied(scores, best, mask)
                    groups = _groups_top_k(scores, relevance, start, stop, top_k, mask=mask)  # type: ignore[arg-type]
                for k in map_ks:
                    ap[_map_name(k, n_c)][start:stop] = metrics.average_precision(groups, k, map_variant, ties)
                relevant[start:stop] = groups.relevant  # type: ignore[index]
            else:
                g, eq = _above_and_tied(scores, best, mask)
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
        error = MemoryBudgetError(
            f"memory_budget {format_size(budget)} cannot hold even one score ({per_cell} B with its temporaries); "
            f"raise memory_budget to at least {format_size(per_cell)}"
        )
        error.needed = per_cell  # type: ignore[attr-defined]
        raise error
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
                    parts = (
                        [(values, index + lo)]
                        if top_values is None or top_index is None
                        else [(top_values, top_index), (values, index + lo)]
                    )
                    top_values, top_index = merge_top_k(parts, top_k)
            best = pos_scores.max(dim=1, keepdim=True).values  # type: ignore[union-attr]
            p_all[start:stop] = ((pos_scores == best) & valid).sum(1).cpu().numpy()
            g = torch.zeros(stop - start, dtype=torch.int64, device=best.device)
            eq, n_last, r_last = g.clone(), g.clone(), g.clone()
            for (lo, _hi), part in zip(slices, columns, strict=True):
                scores, _ = checked_block(part, start, stop, label=label, first_candidate=lo)  # type: ignore[arg-type]
                g += row_counts(scores > best)
                eq += row_counts(scores == best)
                if want_category:
                    at_boundary = scores == top_values[:, -1:]  # type: ignore[index]
                    n_last += row_counts(at_boundary)
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


def merge_top_k(parts: Sequence[tuple[torch.Tensor, torch.Tensor]], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top k of several per-row top-k lists (values, payload), e.g. candidate blocks or ranks.

    The one merge of the engine: candidate blocks merge their running top k with each new block's,
    torchrun ranks merge their slices' top k. Which of several values tied at position k is kept
    does not matter: the boundary tie group is counted exactly apart (n_last, r_last).
    """
    values = torch.cat([v for v, _ in parts], dim=1)
    payload = torch.cat([p for _, p in parts], dim=1)
    top, chosen = values.topk(min(k, values.shape[1]), dim=1, largest=True, sorted=True)
    return top, payload.gather(1, chosen)


def _map_name(k: int | None, n_candidates: int) -> str:
    return "mAP@N" if k is None else f"mAP@{k}"


def _instance_from_sorted(keys: np.ndarray, scores: torch.Tensor, best: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """g and the size of the best positive's tie group, by binary search in the sorted keys.

    `scores` is only read for float64 blocks: a consumed float32 block holds the keys by now.
    """
    if needs_argsort_keys(scores):
        s = scores.cpu()
        b = best.cpu()
        return row_counts(s > b).numpy(), row_counts(s == b).numpy()
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
    target = torch.from_numpy(
        _composite_keys_cpu(
            torch.where(inside, b, torch.zeros_like(b)), torch.zeros(b.shape, dtype=torch.bool), narrow=True
        )
    )
    g = torch.searchsorted(sorted_keys, target, side="left")
    end = torch.searchsorted(sorted_keys, target + 1, side="right")
    outside_g = torch.where(b >= bound, 0, keys.shape[1])
    g, eq = torch.where(inside, g, outside_g).squeeze(1), torch.where(inside, end - g, 0).squeeze(1)
    return g.numpy(), eq.numpy()


def _above_and_tied(scores: torch.Tensor, best: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per row, candidates scoring above `best` and equal to it, through one reused bool mask."""
    g = row_counts(torch.gt(scores, best, out=mask)).cpu().numpy()
    eq = row_counts(torch.eq(scores, best, out=mask)).cpu().numpy()
    return g, eq


def _groups_top_k(
    scores: torch.Tensor, relevance: LabelRelevance, start: int, stop: int, k: int, mask: torch.Tensor | None = None
) -> metrics.Groups:
    values, index = scores.topk(k, dim=1, largest=True, sorted=True)
    rel_top = relevance.at(start, stop, index)
    # the last group may run past position k: size and relevant count come from the whole row
    at_boundary = scores == values[:, -1:] if mask is None else torch.eq(scores, values[:, -1:], out=mask)
    n_last = row_counts(at_boundary).cpu().numpy()
    r_last = relevance.count_where(start, stop, at_boundary).cpu().numpy()
    keys = _sorted_keys_with_relevance(values, rel_top)
    relevant = relevance.totals(start, stop).cpu().numpy()
    return groups_from_sorted(keys, scores.shape[1], prefix_of=(n_last, r_last, relevant))
