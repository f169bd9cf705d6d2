"""The sharded evaluator over torch.distributed ranks (who am I / joining the group: runtime.distributed).

Launched under torchrun (a process group is initialised, or WORLD_SIZE > 1 in the environment),
`evaluate_embeddings`, `evaluate_similarity` and `evaluate(model, corpus)` split the work across
ranks and every rank returns the Report a single process gives. Per direction:

- "candidates": when only R@K, MedR, MeanR and mAP@K with K < n_candidates are asked, each rank
  scores all queries against its slice of the candidates. Per query, g (candidates strictly above
  the best positive), the ties with it and the tied positives add up over slices (all_reduce);
  each rank's top-k prefix is all_gathered and the k best of the union are the k best overall;
  the tie group straddling position k is sized by counting it on every slice (all_reduce); then
  the engine's own prefix groups and metric functions run on the merged prefix.
- "queries": when a whole ranking is needed (mAP@N, PR11, map_variant="dcmh"), or when the scores
  come from a model (fusion re-rank), each rank ranks its slice of the queries against every
  candidate with the single-process engine, and the per-query results are all_gathered.
- "replicated": fewer queries (or candidates) than ranks: every rank does all of it.

Either way every rank ends with per-query statistics equal to the single-process ones, so the
Report's numbers are identical (docs/scale-out.md says when scores themselves are bit-identical).
This module imports torch only inside functions. rank(), is_main_process(), local() and the other
process-group helpers live in fico_registry.runtime.distributed and are importable from here too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fico_registry.errors import ConfigError, MemoryBudgetError, OptionError
from fico_registry.evaluator.shard_collectives import ShardCollectives
from fico_registry.evaluator.shard_sources import LocalRows, ShardEmbeddingScores, candidate_columns_of, query_rows_of
from fico_registry.runtime.distributed import (  # noqa: F401  (re-exported: the evaluator's public names)
    RankFailedError,
    active,
    init_if_launched,
    is_main_process,
    launched,
    local_rank,
    rank,
    split,
    world_size,
)
from fico_registry.runtime.distributed import local as _local

if TYPE_CHECKING:
    from fico_registry.evaluator.options import MetricOptions

local = _local  # assigned, not imported: methods below name their own `local` variables

SHARD_MODES = ("auto", "candidates", "queries")


def sharding(device: Any = "auto") -> Sharding | None:
    """The sharded run of this job (joining torchrun's group first if needed), or None alone."""
    if not init_if_launched(device):
        return None
    import torch.distributed as dist

    return Sharding(dist)


def shard_mode() -> str:
    """FICO_SHARD: "auto" (default), or force "candidates" / "queries" for every direction."""
    mode = os.environ.get("FICO_SHARD", "auto").strip().lower() or "auto"
    if mode not in SHARD_MODES:
        raise OptionError(f"FICO_SHARD={mode!r}: use one of {', '.join(SHARD_MODES)}")
    return mode


# -- the sharded run ------------------------------------------------------------------------------


class Sharding(ShardCollectives):
    """One sharded evaluation: which rows each rank holds, ranks and scores, over ShardCollectives."""

    # -- the evaluator's seam (evaluator.seam.SingleProcess does the same in one process) -----------
    def refuse_judgments(self, judgments: Any) -> None:
        """Judged metrics (qrels) are computed in one process only: refuse them before any work."""
        from fico_registry.evaluator.judged_pass import refuse_sharded

        refuse_sharded(judgments or {})

    def encode_side(self, model: Any, source: Any, side: str, **options: Any) -> Any:
        """models.encoding.encode_side, this rank encoding its slice; every rank gets all outputs."""
        from fico_registry.models.encoding import encode_side_sharded

        return encode_side_sharded(model, source, side, self, **options)

    def annotate(self, report: Any) -> None:
        """settings.world_size and costs.distributed, the same on every rank (shard_costs.annotate)."""
        from fico_registry.evaluator import shard_costs

        shard_costs.annotate(self, report)

    def add_evaluate_costs(self, report: Any, costs: dict[str, Any], encoded: dict[str, Any], query_cost: Any) -> None:
        """Keep the ranking's costs.distributed; totals and per-rank seconds over all ranks."""
        from fico_registry.evaluator import shard_costs

        report.costs = {**costs, **(report.costs or {})}
        shard_costs.add_evaluate_costs(self, report, encoded, query_cost)

    # -- embeddings held as shards ------------------------------------------------------------------
    def follows_shard(
        self, n_images: int, n_texts: int, labelled: bool, map_ks: Sequence[int | None], variant: str
    ) -> bool:
        """Both directions rank candidate slices, so each rank need only hold its shard of each side."""
        if shard_mode() == "queries":
            return False
        return all(
            n >= self.world_size and not _needs_whole_rows(labelled, map_ks, variant, n) for n in (n_images, n_texts)
        )

    def embedding_shards(
        self, images: Any, texts: Any, n_img: int, n_txt: int, measure: str, device: Any, bits: int | None
    ) -> tuple[Any, Any, dict[str, Any]]:
        """The two directions' score sources over this rank's shards of the images and texts.

        Rank r validates and prepares (normalises, packs) only rows split(n, world, r) of each
        side, read straight from the caller's arrays (a memmap is read only there), so memory per
        rank follows the shard. Query blocks reach the other ranks by broadcast when ranked.
        """
        from fico_registry.evaluator.similarity import as_tensor, prepare_embeddings

        lo_i, hi_i = split(n_img, self.world_size, self.rank)
        lo_t, hi_t = split(n_txt, self.world_size, self.rank)
        error, info = None, None
        try:
            my_images, my_texts = images[lo_i:hi_i], texts[lo_t:hi_t]
            if measure == "hamming":
                bits = self._agree_on_codes(as_tensor(my_images, "images"), as_tensor(my_texts, "texts"), bits)
            img, txt, info = prepare_embeddings(my_images, my_texts, measure, device, bits=bits)
        except Exception as exc:
            error = exc
        self.raise_if_any_failed(error)
        assert info is not None  # prepare_embeddings returned, or raise_if_any_failed raised
        infos = self.all_gather_object(info)
        if any(other != info for other in infos):  # e.g. one shard in float64, another in float32
            raise ConfigError(
                f"the ranks' shards of the embeddings differ in kind ({infos}); pass the same arrays on every rank"
            )
        n_bits = info.get("bits", 0)
        self.resident = {"image_rows": hi_i - lo_i, "text_rows": hi_t - lo_t, "bytes": _nbytes(img) + _nbytes(txt)}
        common = {"sharding": self, "measure": measure, "n_bits": n_bits}
        i2t = ShardEmbeddingScores(
            queries=img, candidates=txt, query_side="image", n_queries=n_img, n_candidates=n_txt, **common
        )
        t2i = ShardEmbeddingScores(
            queries=txt, candidates=img, query_side="text", n_queries=n_txt, n_candidates=n_img, **common
        )
        return i2t, t2i, info

    def _agree_on_codes(self, images: Any, texts: Any, bits: int | None) -> int | None:
        """Hash codes are read as one format on every rank, the one a single process would infer from all rows."""
        import torch

        from fico_registry.errors import NonBinaryCodesError

        mine = sorted({float(v) for t in (images, texts) for v in torch.unique(t).tolist()})
        kinds = self.all_gather_object((str(images.dtype), str(texts.dtype), mine))
        values = {v for _, _, vals in kinds for v in vals}
        if images.dtype == torch.uint8 and bits is None and not values <= {0.0, 1.0}:
            return images.shape[1] * 8  # some shard holds packed bytes: they all do
        if images.dtype != torch.uint8 and not (values <= {0.0, 1.0} or values <= {-1.0, 1.0}):
            raise NonBinaryCodesError(
                f"hash codes must be {{0,1}} or {{-1,+1}}; across all ranks' shards the values are {sorted(values)[:6]}"
            )
        return bits

    # -- ranking ----------------------------------------------------------------------------------
    def run_directions(
        self,
        jobs: dict[str, tuple[Any, Any, Any]],
        options: MetricOptions,
        *,
        labels: Any,
        caption_map: Any,
        parallel: bool,
        budget: int,
        device: Any,
    ) -> dict[str, Any]:
        """Per-query DirectionStats of every direction, identical on every rank to a single process.

        options: the checked metric options; budget: each direction's share (half when `parallel`).
        """
        from concurrent.futures import ThreadPoolExecutor

        from fico_registry.evaluator.relevance import label_relevance

        recall_ks, map_ks, ties, map_variant = options.recall_ks, options.map_ks, options.ties, options.map_variant
        forced = shard_mode()
        self.check_same_call(
            {
                "directions": {d: (s.n_queries, s.n_candidates, type(s).__name__) for d, (s, _, _) in jobs.items()},
                "labels": None if labels is None else tuple(labels.shape),
                "recall_ks": list(recall_ks),
                "map_ks": list(map_ks),
                "ties": ties,
                "map_variant": map_variant,
                "FICO_SHARD": forced,
            }
        )
        plans = {}
        for direction, (source, _positives, relevance) in jobs.items():
            plans[direction] = self._plan(source, relevance is not None, map_ks, map_variant, forced)
        self.modes = dict(plans)
        shown = options.progress if self.rank == 0 else False
        common = {
            "recall_ks": recall_ks,
            "map_ks": map_ks,
            "map_variant": map_variant,
            "ties": ties,
            "device": device,
            "progress": shown,
        }

        def run(direction: str, job_budget: int) -> Any:
            source, positives, relevance = jobs[direction]
            began = time.perf_counter()
            mode = plans[direction]
            if mode == "candidates":
                lo, hi = split(source.n_candidates, self.world_size, self.rank)
                if labels is None:
                    local_relevance = None
                elif direction == "i2t":  # candidates are captions, taking their image's labels
                    local_relevance = label_relevance(labels, labels, candidate_map=caption_map[lo:hi])
                else:  # candidates are images
                    local_relevance = label_relevance(labels, labels[lo:hi], query_map=caption_map)
                stats = self._run_candidates(
                    source, lo, hi, positives, local_relevance, budget=job_budget, label=direction, **common
                )
            else:
                stats = self._run_queries(
                    source, positives, relevance, mode, budget=job_budget, label=direction, **common
                )
            self.timings[direction] = time.perf_counter() - began
            return stats

        # collectives of one group must not interleave across threads: only the "queries" mode,
        # whose collectives all come after the ranking, runs the two directions in two threads
        if parallel and "candidates" not in plans.values():
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fico-direction") as pool:
                futures = {d: pool.submit(self._ranked_locally, run, d, budget) for d in jobs}
                local_results = {d: f.result() for d, f in futures.items()}
            return {d: self._finish_queries(jobs[d][0], plans[d], local_results[d]) for d in jobs}
        full_budget = budget * 2 if parallel else budget
        out = {}
        for direction in jobs:
            if plans[direction] == "candidates":
                out[direction] = run(direction, full_budget)
            else:
                out[direction] = self._finish_queries(
                    jobs[direction][0], plans[direction], self._ranked_locally(run, direction, full_budget)
                )
        return out

    @staticmethod
    def _ranked_locally(
        run: Callable[[str, int], Any], direction: str, budget: int
    ) -> tuple[Any, BaseException | None]:
        """Rank this rank's share, keeping a failure to report collectively instead of raising alone."""
        try:
            return run(direction, budget), None
        except Exception as exc:  # re-raised on every rank by _finish_queries
            return None, exc

    def _plan(self, source: Any, labelled: bool, map_ks: Sequence[int | None], variant: str, forced: str) -> str:
        from fico_registry.evaluator.sources import EmbeddingScores, MatrixScores

        n_q, n_c = source.n_queries, source.n_candidates
        if isinstance(source, LocalRows):
            if forced == "candidates":
                raise OptionError(
                    "FICO_SHARD=candidates: cross-attention scores are held as each rank's query rows; use "
                    "FICO_SHARD=queries (or auto)"
                )
            return "queries"  # the rows this rank holds are its queries, whole
        needs_whole_rows = _needs_whole_rows(labelled, map_ks, variant, n_c)
        shardable = isinstance(source, (EmbeddingScores, MatrixScores, ShardEmbeddingScores)) and n_c >= self.world_size
        if forced == "candidates":
            if needs_whole_rows:
                raise OptionError(
                    "FICO_SHARD=candidates cannot give mAP@N, PR11 or map_variant='dcmh' (they need whole rankings): "
                    "use FICO_SHARD=queries (or auto), or ask only mAP@K with K < n_candidates"
                )
            if not shardable:
                raise OptionError(
                    f"FICO_SHARD=candidates needs embedding or matrix scores with at least {self.world_size} "
                    "candidates; "
                    f"{type(source).__name__} with {n_c} candidates: use FICO_SHARD=queries (or auto)"
                )
            return "candidates"
        if forced == "queries" or needs_whole_rows or not shardable:
            return "replicated" if n_q < self.world_size else "queries"
        return "candidates"

    def _run_queries(
        self, source: Any, positives: Any, relevance: Any, mode: str, *, budget: int, label: str, **common: Any
    ) -> Any:
        from fico_registry.evaluator.engine import run_direction

        if mode == "replicated":
            return run_direction(source, positives, relevance, budget=budget, label=label, **common)
        lo, hi = split(source.n_queries, self.world_size, self.rank)
        local_relevance = None if relevance is None else _offset_relevance(relevance, lo)
        held = isinstance(source, LocalRows) and (source.lo, source.lo + source.rows.shape[0]) == (lo, hi)
        rows = source.scores() if held else query_rows_of(source, lo, hi)
        return run_direction(rows, positives[lo:hi], local_relevance, budget=budget, label=label, **common)

    def _finish_queries(self, source: Any, mode: str, result: tuple[Any, BaseException | None]) -> Any:
        """Collective: re-raise any rank's failure everywhere, then all_gather the per-query rows."""
        from fico_registry.evaluator.engine import DirectionStats

        stats, error = result
        self.raise_if_any_failed(error)
        if mode == "replicated":
            return stats
        began = time.perf_counter()
        counts = [hi - lo for lo, hi in (split(source.n_queries, self.world_size, r) for r in range(self.world_size))]
        gathered = DirectionStats(
            self.gather_rows(stats.g, counts),
            self.gather_rows(stats.t, counts),
            self.gather_rows(stats.p, counts),
            {name: self.gather_rows(values, counts) for name, values in stats.ap.items()},
            None if stats.pr11 is None else self.gather_rows(stats.pr11, counts),
            None if stats.relevant is None else self.gather_rows(stats.relevant, counts),
        )
        self.timings["gather_s"] = self.timings.get("gather_s", 0.0) + time.perf_counter() - began
        return gathered

    def _run_candidates(
        self,
        source: Any,
        lo: int,
        hi: int,
        positives: Any,
        relevance: Any,
        *,
        recall_ks: Sequence[int],
        map_ks: Sequence[int | None],
        map_variant: str,
        ties: str,
        budget: int,
        device: Any,
        label: str,
        progress: bool | None,
    ) -> Any:
        """All queries against candidates lo..hi-1, merged exactly with the other ranks' slices."""
        import torch

        from fico_registry.evaluator import metrics
        from fico_registry.evaluator.engine import (
            DirectionStats,
            _progress,
            _sorted_keys_with_relevance,
            groups_from_sorted,
            merge_top_k,
        )
        from fico_registry.evaluator.sources import checked_block

        local = candidate_columns_of(source, lo, hi)
        n_q, n_c, n_local = source.n_queries, source.n_candidates, hi - lo
        want_category = relevance is not None and len(map_ks) > 0
        top_k = max(int(k) for k in map_ks if k is not None) if want_category else 0  # every k < n_c here (see _plan)
        k_local = min(top_k, n_local)
        # scores, comparisons and relevance of the widest slice, plus the gathered top-k of every
        # rank; all ranks must walk the same query blocks, so they agree on the smallest
        widest = -(-n_c // self.world_size)
        per_row = widest * (local.cell_bytes() + 12) + self.world_size * top_k * 48 + 64
        rows = int(self.all_reduce(torch.tensor([min(n_q, budget // per_row)], dtype=torch.int64), "min").item())
        if rows < 1:
            raise MemoryBudgetError(
                f"one query row of this rank's candidate slice needs about {per_row / 2**20:.1f} MiB but memory_budget "
                f"is {budget / 2**20:.1f} MiB; raise memory_budget or use more ranks"
            )
        positives = positives.to(device)
        g_all = np.empty(n_q, dtype=np.int64)
        eq_all = np.empty(n_q, dtype=np.int64)
        p_all = np.empty(n_q, dtype=np.int64)
        ap = {("mAP@N" if k is None else f"mAP@{k}"): np.empty(n_q) for k in map_ks} if want_category else {}
        relevant = np.empty(n_q, dtype=np.int64) if want_category else None
        with _progress(progress, f"ranking {label} (candidate slice)", n_q) as advance:
            for start in range(0, n_q, rows):
                stop = min(n_q, start + rows)
                error = None
                try:
                    scores, floor = checked_block(local, start, stop, label=label, first_candidate=lo)
                    pos = positives[start:stop]
                    mine = (pos >= lo) & (pos < hi)
                    pos_scores = scores.gather(1, (pos - lo).clamp(0, n_local - 1))
                    pos_scores = torch.where(mine, pos_scores, torch.full_like(pos_scores, floor))
                    best_local = pos_scores.max(dim=1).values
                except Exception as exc:
                    error = exc
                self.raise_if_any_failed(error)
                comm_dtype = best_local.dtype if best_local.is_floating_point() else torch.int64
                best = self.all_reduce(best_local.to(comm_dtype), "max").to(scores.dtype)[:, None]
                counts = [(scores > best).sum(1), (scores == best).sum(1), ((pos_scores == best) & mine).sum(1)]
                if want_category:
                    values, index = scores.topk(k_local, dim=1, largest=True, sorted=True)
                    rel_top = relevance.at(start, stop, index)
                    if k_local < top_k:  # a short slice pads with the lowest score: only ever tied last
                        values = torch.cat([values, values.new_full((stop - start, top_k - k_local), floor)], dim=1)
                        rel_top = torch.cat([rel_top, rel_top.new_zeros((stop - start, top_k - k_local))], dim=1)
                    every_values = self.all_gather(values.to(comm_dtype))  # (world, b, top_k)
                    every_rel = self.all_gather(rel_top.to(torch.uint8))
                    values, rel_top = merge_top_k(list(zip(every_values, every_rel, strict=True)), top_k)
                    values, rel_top = values.to(scores.dtype), rel_top.bool()
                    at_boundary = scores == values[:, -1:]
                    counts += [
                        at_boundary.sum(1),
                        relevance.count_where(start, stop, at_boundary),
                        relevance.totals(start, stop),
                    ]
                totals = self.all_reduce(torch.stack(counts, dim=1).to(torch.int64)).cpu().numpy()
                g_all[start:stop], eq_all[start:stop], p_all[start:stop] = totals[:, 0], totals[:, 1], totals[:, 2]
                if want_category:
                    keys = _sorted_keys_with_relevance(values, rel_top)
                    groups = groups_from_sorted(keys, n_c, prefix_of=(totals[:, 3], totals[:, 4], totals[:, 5]))
                    for k in map_ks:
                        ap["mAP@N" if k is None else f"mAP@{k}"][start:stop] = metrics.average_precision(
                            groups, k, map_variant, ties
                        )
                    relevant[start:stop] = groups.relevant  # type: ignore[index]
                advance(stop - start)
        return DirectionStats(g_all, eq_all - p_all, p_all, ap, None, relevant)

    # -- encoding and query-time scoring ------------------------------------------------------------
    def cross_attention_matrix(self, model: Any, image_features: Any, text_features: Any, **scoring: Any) -> np.ndarray:
        """The full (n_images, n_texts) cross-attention matrix on every rank; each rank scores its image rows.

        scoring: query_time.cross_attention_matrix's keywords (device, cost, progress, image_block).
        The plugin contract makes model.score identical for any block split, so the slices need
        not follow the single-process blocks.
        """
        from fico_registry.evaluator.query_time import _n

        n_img = _n(image_features)
        lo, hi = split(n_img, self.world_size, self.rank)
        began = time.perf_counter()
        part = self._my_image_rows(model, image_features, text_features, lo, hi, **scoring)
        # every rank must gather the same dtype: a rank with no rows learns it from the others
        kinds = self.all_gather_object(None if part is None else (str(part.dtype), part.shape[1]))
        dtype, width = next(k for k in kinds if k is not None)
        if part is None:
            part = np.empty((0, width), dtype=dtype)
        self.timings["query_time_s"] = time.perf_counter() - began
        counts = [b - a for a, b in (split(n_img, self.world_size, r) for r in range(self.world_size))]
        return self.gather_rows(part, counts)

    def cross_attention_shards(
        self, model: Any, image_features: Any, text_features: Any, *, device: Any, **scoring: Any
    ) -> tuple[Any, Any] | None:
        """Each rank's rows of both directions' cross-attention scores, or None when a shard would be empty.

        scoring: as in cross_attention_matrix (cost, progress, image_block) besides `device`.

        Rank r scores its images (rows split(n_images, world, r)) against all captions; one
        all_to_all then hands every rank the t2i rows of its captions (split(n_texts, world, r)).
        Each rank holds about 2 / world_size of the matrix instead of all of it, and both
        directions rank their own query rows with whole rankings (mAP@N and PR11 stay exact).
        """
        import torch

        from fico_registry.evaluator.query_time import _n

        n_img, n_txt = _n(image_features), _n(text_features)
        if min(n_img, n_txt) < self.world_size:
            return None
        lo_i, hi_i = split(n_img, self.world_size, self.rank)
        began = time.perf_counter()
        part = self._my_image_rows(model, image_features, text_features, lo_i, hi_i, device=device, **scoring)
        assert part is not None  # every rank holds images here (n_images >= world_size)
        self.timings["query_time_s"] = time.perf_counter() - began
        began = time.perf_counter()
        dtypes = self.all_gather_object(str(part.dtype))
        if len(set(dtypes)) != 1:
            raise ConfigError(
                f"the ranks' cross-attention scores differ in dtype ({dtypes}); the model must score in one dtype"
            )
        rows = torch.from_numpy(np.ascontiguousarray(part)) if isinstance(part, np.ndarray) else part.cpu().contiguous()
        text_cuts = [split(n_txt, self.world_size, q) for q in range(self.world_size)]
        image_cuts = [split(n_img, self.world_size, q) for q in range(self.world_size)]
        lo_t, hi_t = text_cuts[self.rank]
        # to rank q goes [my images, q's captions]; from rank q comes [q's images, my captions]
        send = torch.cat([rows[:, a:b].reshape(-1) for a, b in text_cuts])
        send = send.to(self._comm_device(send))  # an NCCL-only group needs them on the GPU
        received = torch.empty((n_img * (hi_t - lo_t),), dtype=rows.dtype, device=send.device)
        self.dist.all_to_all_single(
            received,
            send,
            output_split_sizes=[(b - a) * (hi_t - lo_t) for a, b in image_cuts],
            input_split_sizes=[(hi_i - lo_i) * (b - a) for a, b in text_cuts],
        )
        del send
        t2i_rows = received.cpu().reshape(n_img, hi_t - lo_t).T.contiguous()
        self.timings["exchange_s"] = time.perf_counter() - began
        self.resident = {
            "image_rows": hi_i - lo_i,
            "text_rows": hi_t - lo_t,
            "bytes": _nbytes(rows) + _nbytes(t2i_rows),
        }
        return (
            LocalRows(rows.numpy(), n_queries=n_img, lo=lo_i, name="i2t", device=device),
            LocalRows(t2i_rows.numpy(), n_queries=n_txt, lo=lo_t, name="t2i", device=device),
        )

    def _my_image_rows(
        self,
        model: Any,
        image_features: Any,
        text_features: Any,
        lo: int,
        hi: int,
        *,
        progress: Any = None,
        **scoring: Any,
    ) -> Any:
        """Collective: this rank's image rows lo..hi-1 of the cross-attention matrix (None when it has none).

        A failure on any rank raises on every rank, so none waits in a collective that never comes.
        """
        from fico_registry.evaluator.query_time import cross_attention_matrix, take

        part, error = None, None
        try:
            if hi > lo:
                my_images = take(image_features, slice(lo, hi), "cpu")
                shown = progress if self.rank == 0 else False
                part = cross_attention_matrix(model, my_images, text_features, progress=shown, **scoring)
        except Exception as exc:
            error = exc
        self.raise_if_any_failed(error)
        return part


def _offset_relevance(relevance: Any, lo: int) -> Any:
    return relevance.shifted(lo)


def _needs_whole_rows(labelled: bool, map_ks: Sequence[int | None], variant: str, n_candidates: int) -> bool:
    """mAP@N, PR11 (any K >= n_candidates) and the dcmh variant need each query's whole ranking."""
    return (
        labelled and len(map_ks) > 0 and (variant == "dcmh" or any(k is None or int(k) >= n_candidates for k in map_ks))
    )


def _nbytes(t: Any) -> int:
    return int(t.numel() * t.element_size())
