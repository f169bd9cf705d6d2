"""Two score sources in, a Report out: the step every evaluation entry point ends with.

evaluate_embeddings, evaluate_similarity, evaluate(model, corpus) and the cascade study each build
an i2t and a t2i ScoreSource, then call evaluate_sources: relevance from the labels, both
directions ranked by the engine (the Hamming histogram path, two threads on the CPU, or the ranks
of a torch.distributed job: evaluator.sharded), metrics under ties, the judged pass, the Report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from fico_registry.evaluator import judged_pass, metrics
from fico_registry.evaluator.budget import parse_budget
from fico_registry.evaluator.checks import check_labels
from fico_registry.evaluator.engine import DirectionStats, run_direction
from fico_registry.evaluator.hamming import histogram_path_applies, histogram_stats
from fico_registry.evaluator.options import MetricOptions, budget_shared_by
from fico_registry.evaluator.relevance import label_relevance, positives_of_images, positives_of_texts
from fico_registry.evaluator.report import Report
from fico_registry.evaluator.seam import SingleProcess, evaluation_seam
from fico_registry.evaluator.sources import EmbeddingScores, MatrixScores, ScoreSource


def evaluate_sources(
    i2t: ScoreSource,
    t2i: ScoreSource,
    c2i: np.ndarray,
    labels: Any,
    options: MetricOptions,
    *,
    device: torch.device,
    settings: dict[str, Any],
    started: float,
    ranked_to: int | None = None,
    sharded: Any = None,
    judgments: Any = None,
) -> Report:
    """The Report of ranking i2t and t2i (c2i: checked caption-to-image map; labels: raw or None).

    ranked_to: the sources rank only this many candidates per query (mAP beyond it is undefined);
    sharded: this job's Sharding or SingleProcess (evaluator.seam; found from the environment when
    None); settings: what the
    caller adds to report.settings; started: perf_counter() when the evaluation began.
    """
    options = options.checked()
    recall_ks, map_ks, ties, map_variant = options.recall_ks, options.map_ks, options.ties, options.map_variant
    n_images, n_texts = i2t.n_queries, i2t.n_candidates
    budget = parse_budget(options.memory_budget, device)
    judgment_sets = judged_pass.check_judgment_options(judgments, options.ndcg_ks, options.gain)
    sharded = sharded if sharded is not None else evaluation_seam(device)
    one_process = isinstance(sharded, SingleProcess)
    if not one_process:  # refused before the sharding is used at all
        judged_pass.refuse_sharded(judgment_sets)
    lab = c2i_t = rel_i2t = rel_t2i = None
    if labels is not None:
        lab = check_labels(labels, n_images).to(device)
        c2i_t = torch.from_numpy(c2i).to(device)
        rel_i2t = label_relevance(lab, lab, candidate_map=c2i_t)
        rel_t2i = label_relevance(lab, lab, query_map=c2i_t)
    jobs = {
        "i2t": (i2t, positives_of_images(c2i, n_images), rel_i2t),
        "t2i": (t2i, positives_of_texts(c2i), rel_t2i),
    }
    # On the CPU the two directions run in two threads: numpy's sorts and passes and torch's
    # kernels release the GIL, so a second core is not left idle. Each gets half the budget.
    # Model-backed sources (re-rank) stay sequential: they drive one model and one cost meter.
    parallel = device.type == "cpu" and all(isinstance(s, (EmbeddingScores, MatrixScores)) for s in (i2t, t2i))
    # the judged pass reads the engine's own score blocks (judged_pass.DirectionCollector)
    collect = judged_pass.collectors(
        {"i2t": i2t, "t2i": t2i},
        judgment_sets,
        recall_ks=recall_ks,
        ndcg_ks=options.ndcg_ks,
        ties=ties,
        gain=options.gain,
    )
    common = dict(
        recall_ks=recall_ks,
        map_ks=map_ks,
        map_variant=map_variant,
        ties=ties,
        device=device,
        progress=options.progress,
        budget=budget // 2 if parallel else budget,
    )
    if one_process:
        stats = _single_process_stats(jobs, c2i, lab, parallel, common, collect, budget)
    else:  # torch.distributed: every rank gets every direction's per-query stats
        stats = sharded.run_directions(
            jobs, options, labels=lab, caption_map=c2i_t, parallel=parallel, budget=common["budget"], device=device
        )
    instance = {d: _instance_metrics(s, recall_ks, ties) for d, s in stats.items()}
    category = None
    if labels is not None:
        category = {d: _category_metrics(s, map_ks, ranked_to) for d, s in stats.items()}
    settings = {
        **settings,
        "ties": ties,
        "map_variant": map_variant if labels is not None else None,
        "recall_ks": list(recall_ks),
        "map_ks": [k for k in map_ks] if labels is not None else [],
        "relevance": "shares at least one label" if labels is not None else None,
        "device": str(device),
        "n_images": n_images,
        "n_texts": n_texts,
        "n_classes": None if lab is None else int(lab.shape[1]),
        "memory_budget": budget,
        "seconds": round(time.perf_counter() - started, 4),
    }
    report = Report(instance=instance, category=category, settings=settings, per_query=stats)
    if judgment_sets:
        report.judged = judged_pass.judged_section({"i2t": i2t, "t2i": t2i}, judgment_sets, collect, budget=budget)
        judged_seconds = round(sum(c.seconds for c in collect.values()), 4)
        settings.update(ndcg_ks=list(options.ndcg_ks), gain=options.gain, judged_seconds=judged_seconds)
        settings.update(seconds=round(time.perf_counter() - started, 4))
    sharded.annotate(report)
    return report


def _single_process_stats(
    jobs: dict[str, Any],
    c2i: np.ndarray,
    lab: torch.Tensor | None,
    parallel: bool,
    common: dict[str, Any],
    collect: dict[str, Any],
    budget: int,
) -> dict[str, DirectionStats]:
    """Both directions in this process: per-query distance histograms for Hamming codes, else the engine."""
    i2t, t2i = jobs["i2t"][0], jobs["t2i"][0]
    if histogram_path_applies(i2t, t2i):
        return histogram_stats(
            i2t,
            c2i,
            lab,
            map_ks=common["map_ks"],
            map_variant=common["map_variant"],
            ties=common["ties"],
            budget=budget,
        )
    with budget_shared_by(2 if parallel else 1, budget):
        return _run_directions(jobs, parallel, common, collect)


def _run_directions(
    jobs: dict[str, Any], parallel: bool, common: dict[str, Any], collect: dict[str, Any] | None = None
) -> dict[str, DirectionStats]:
    """Both directions, in two threads when `parallel`; collect[d] sees each of direction d's score blocks."""
    hooks = collect or {}
    if not parallel:
        return {
            d: run_direction(src, pos, rel, label=d, on_block=hooks.get(d), **common)
            for d, (src, pos, rel) in jobs.items()
        }
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fico-direction") as pool:
        futures = {
            d: pool.submit(run_direction, src, pos, rel, label=d, on_block=hooks.get(d), **common)
            for d, (src, pos, rel) in jobs.items()
        }
        return {d: f.result() for d, f in futures.items()}


def _instance_metrics(s: DirectionStats, recall_ks: Sequence[int], ties: str) -> dict[str, float]:
    out = {f"R@{k}": float(metrics.recall_at(s.g, s.t, s.p, k, ties).mean()) for k in recall_ks}
    rank = metrics.ranks(s.g, s.t, s.p, ties)
    out["MedR"] = metrics.median_rank_under_ties(s.g, s.t, s.p, ties)
    out["MeanR"] = float(rank.mean())
    return out


def _category_metrics(s: DirectionStats, map_ks: Sequence[int | None], ranked_to: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in s.ap.items():
        k = None if name == "mAP@N" else int(name.split("@")[1])
        undefined = ranked_to is not None and (k is None or k > ranked_to)
        out[name] = None if undefined else float(values.mean())
    if s.pr11 is not None and ranked_to is None:
        valid = ~np.isnan(s.pr11[:, 0])
        out["PR11"] = s.pr11[valid].mean(axis=0).tolist() if valid.any() else None
        out["PR11_queries"] = int(valid.sum())
    else:
        out["PR11"] = None
    return out
