"""The one evaluator: embeddings or similarity matrices in, a Report out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from fico_registry.errors import LabelError, MappingError, OptionError, ShapeError
from fico_registry.evaluator import judged_pass, metrics, shard_costs
from fico_registry.evaluator.budget import parse_budget
from fico_registry.evaluator.engine import DirectionStats, run_direction
from fico_registry.evaluator.hamming import histogram_path_applies, histogram_stats
from fico_registry.evaluator.options import budget_shared_by, checked_ks
from fico_registry.evaluator.relevance import label_relevance, positives_of_images, positives_of_texts
from fico_registry.evaluator.report import Report
from fico_registry.evaluator.similarity import as_tensor, check_measure, prepare_embeddings
from fico_registry.evaluator.sources import EmbeddingScores, MatrixScores, ScoreSource, unique_candidates
from fico_registry.runtime.devices import resolve_device

DEFAULT_RECALL_KS = (1, 5, 10)
DEFAULT_MAP_KS: tuple[int | None, ...] = (10, 100, None)
DEFAULT_NDCG_KS = judged_pass.DEFAULT_NDCG_KS


def evaluate_embeddings(
    images: Any,
    texts: Any,
    caption_to_image: Any,
    labels: Any = None,
    measure: str = "cosine",
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    map_ks: Sequence[int | None] = DEFAULT_MAP_KS,
    ties: str = "expected",
    map_variant: str = "fico",
    device: str | torch.device | None = "auto",
    memory_budget: int | str | None = None,
    *,
    bits: int | None = None,
    progress: bool | None = None,
    judgments: Any = None,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    gain: str = "linear",
) -> Report:
    """Evaluate image and text embeddings (or hash codes) with the full FiCo-ITR protocol.

    images (n_images, d) and texts (n_texts, d): float arrays, or with measure="hamming" codes
    in {0,1} / {-1,+1} / packed uint8 bits (`bits` disambiguates uint8 input); with
    measure="maxsim" images are (n_images, n_vectors, d). caption_to_image[j] is the image of
    caption j. labels (n_images, n_classes) multi-hot enables category-level mAP and PR11.
    judgments: name -> JudgmentSet or (i2t, t2i) pair of Judgments adds report.judged (R@K,
    R-P, mAP@R, NDCG@K / MRR@K for ndcg_ks, with `gain` "linear" or "exponential").
    """
    started = time.perf_counter()
    _join_torchrun(device)
    dev = resolve_device(device)
    check_measure(measure)
    recall_ks, map_ks = _check_options(recall_ks, map_ks, ties, map_variant)
    sharded = _sharding(dev)
    n_img, n_txt = _n_items(images), _n_items(texts)
    if sharded is not None and sharded.follows_shard(n_img, n_txt, labels is not None, map_ks, map_variant):
        # torchrun: each rank prepares only its shard of each side (memory follows the shard)
        i2t, t2i, info = sharded.embedding_shards(images, texts, n_img, n_txt, measure, dev, bits)
        c2i = _check_mapping(caption_to_image, n_img, n_txt)
    else:
        img, txt, info = prepare_embeddings(images, texts, measure, dev, bits=bits)
        c2i = _check_mapping(caption_to_image, img.shape[0], txt.shape[0])
        n_bits = info.get("bits", 0)
        i2t = unique_candidates(EmbeddingScores(img, txt, measure, "image", n_bits))
        t2i = unique_candidates(EmbeddingScores(img, txt, measure, "text", n_bits))
    settings = {"measure": measure, **info}
    return _evaluate(
        i2t,
        t2i,
        c2i,
        labels,
        recall_ks,
        map_ks,
        ties,
        map_variant,
        dev,
        memory_budget,
        progress,
        settings,
        started,
        sharded=sharded,
        judged=(judgments, ndcg_ks, gain),
    )


def _n_items(x: Any) -> int:
    shape = getattr(x, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else 0
    return len(x) if isinstance(x, (list, tuple)) else 0


def evaluate_similarity(
    i2t: Any,
    caption_to_image: Any,
    t2i: Any = None,
    labels: Any = None,
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    map_ks: Sequence[int | None] = DEFAULT_MAP_KS,
    ties: str = "expected",
    map_variant: str = "fico",
    device: str | torch.device | None = "auto",
    memory_budget: int | str | None = None,
    *,
    progress: bool | None = None,
    judgments: Any = None,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    gain: str = "linear",
) -> Report:
    """Evaluate precomputed scores: i2t (n_images, n_texts), optional t2i (n_texts, n_images).

    Models whose two directions differ (fusion re-rank) pass both; otherwise t2i = i2t.T.
    Higher scores mean more similar. Matrices may be numpy memmaps: rows are read in blocks.
    judgments: as in evaluate_embeddings (t2i judgments are scored on the t2i matrix when given).
    """
    started = time.perf_counter()
    _join_torchrun(device)
    dev = resolve_device(device)
    recall_ks, map_ks = _check_options(recall_ks, map_ks, ties, map_variant)
    i2t_mat = _check_matrix(i2t, "i2t")
    n_images, n_texts = i2t_mat.shape
    c2i = _check_mapping(caption_to_image, n_images, n_texts)
    if t2i is None:
        t2i_source: ScoreSource = MatrixScores(i2t_mat, transpose=True, device=dev, name="i2t")
    else:
        t2i_mat = _check_matrix(t2i, "t2i")
        if tuple(t2i_mat.shape) != (n_texts, n_images):
            raise ShapeError(
                f"t2i must be (n_texts, n_images) = {(n_texts, n_images)}, got {tuple(t2i_mat.shape)}; "
                "pass the text-to-image matrix itself, not the i2t one"
            )
        t2i_source = MatrixScores(t2i_mat, device=dev, name="t2i")
    i2t_source = MatrixScores(i2t_mat, device=dev, name="i2t")
    settings = {
        "measure": "precomputed",
        "input_dtype": str(i2t_mat.dtype).replace("torch.", ""),
        "separate_t2i": t2i is not None,
    }
    return _evaluate(
        i2t_source,
        t2i_source,
        c2i,
        labels,
        recall_ks,
        map_ks,
        ties,
        map_variant,
        dev,
        memory_budget,
        progress,
        settings,
        started,
        judged=(judgments, ndcg_ks, gain),
    )


def _check_options(
    recall_ks: Any, map_ks: Any, ties: str, variant: str
) -> tuple[tuple[int, ...], tuple[int | None, ...]]:
    """Checked options; recall_ks / map_ks as tuples of ints (a bare int K means (K,))."""
    metrics.check_ties(ties)
    metrics.check_variant(variant)
    recall = checked_ks(recall_ks, "recall_ks", allow_none=False)
    return recall, checked_ks(map_ks, "map_ks", allow_none=True)  # type: ignore[return-value]


def _check_matrix(x: Any, name: str) -> Any:
    if isinstance(x, np.ndarray):
        if x.ndim != 2:
            raise ShapeError(f"{name} must be a 2-d (queries, candidates) matrix, got shape {x.shape}")
        if x.dtype.kind not in "fiu":
            raise ShapeError(f"{name} has dtype {x.dtype}; scores must be numeric")
        if 0 in x.shape:
            raise ShapeError(f"{name} is empty: shape {x.shape}")
        return x  # rows are read (and checked for NaN) block by block
    t = as_tensor(x, name)
    if t.ndim != 2 or 0 in t.shape:
        raise ShapeError(f"{name} must be a non-empty 2-d matrix, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise ShapeError(f"{name} has dtype {t.dtype}; scores must be real numbers")
    return t


def _check_mapping(caption_to_image: Any, n_images: int, n_texts: int) -> np.ndarray:
    if isinstance(caption_to_image, torch.Tensor):
        c2i = caption_to_image.detach().cpu().numpy()
    else:
        c2i = _as_array(caption_to_image)
    if c2i.ndim != 1 or c2i.dtype.kind not in "iu":
        raise MappingError(f"caption_to_image must be a 1-d integer array, got shape {c2i.shape} dtype {c2i.dtype}")
    if len(c2i) != n_texts:
        raise MappingError(f"caption_to_image has {len(c2i)} entries but there are {n_texts} captions")
    if len(c2i) and (c2i.min() < 0 or c2i.max() >= n_images):
        raise MappingError(f"caption_to_image values must lie in [0, {n_images - 1}]; found {c2i.min()}..{c2i.max()}")
    counts = np.bincount(c2i, minlength=n_images)
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0)
        raise MappingError(
            f"{len(empty)} images have no caption (first: {empty[:5].tolist()}); every image needs at least one, "
            "or drop those images"
        )
    return c2i.astype(np.int64)


def _as_array(x: Any, error: type[Exception] = MappingError) -> np.ndarray:
    try:
        return np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise error(f"cannot read {type(x).__name__} as an array ({exc}); give equal-length rows") from None


def _check_labels(labels: Any, n_images: int) -> torch.Tensor:
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else _as_array(labels, LabelError)
    if lab.ndim != 2:
        raise LabelError(f"labels must be (n_images, n_classes) multi-hot, got shape {lab.shape}")
    if lab.shape[1] == 0:
        raise LabelError(
            f"labels have shape {lab.shape}: zero classes, so no image is relevant to any query; pass at least "
            "one class per row, or labels=None for instance metrics only"
        )
    if lab.dtype.kind not in "biuf":
        raise LabelError(f"labels have dtype {lab.dtype}; pass a numeric 0/1 multi-hot array")
    if lab.shape[0] != n_images:
        raise LabelError(f"labels have {lab.shape[0]} rows but there are {n_images} images (one row per image)")
    if lab.dtype.kind == "f" and not np.isfinite(lab).all():
        raise LabelError("labels hold NaN or infinite values")
    if not np.isin(lab, (0, 1)).all():
        raise LabelError("labels must be multi-hot: every entry 0 or 1 (a caption takes its image's labels)")
    return torch.from_numpy(lab.astype(np.float32))


def _evaluate(
    i2t: ScoreSource,
    t2i: ScoreSource,
    c2i: np.ndarray,
    labels: Any,
    recall_ks: Sequence[int],
    map_ks: Sequence[int | None],
    ties: str,
    map_variant: str,
    device: torch.device,
    memory_budget: int | str | None,
    progress: bool | None,
    settings: dict[str, Any],
    started: float,
    ranked_to: int | None = None,
    *,
    sharded: Any = None,
    judged: tuple[Any, Sequence[int], str] = (None, DEFAULT_NDCG_KS, "linear"),
) -> Report:
    n_images, n_texts = i2t.n_queries, i2t.n_candidates
    budget = parse_budget(memory_budget, device)
    judgment_sets = judged_pass.check_judgment_options(*judged)
    sharded = sharded if sharded is not None else _sharding(device)
    if sharded is not None:
        judged_pass.refuse_sharded(judgment_sets)
    rel_i2t = rel_t2i = None
    if labels is not None:
        lab = _check_labels(labels, n_images).to(device)
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
        {"i2t": i2t, "t2i": t2i}, judgment_sets, recall_ks=recall_ks, ndcg_ks=judged[1], ties=ties, gain=judged[2]
    )
    common = dict(
        recall_ks=recall_ks,
        map_ks=map_ks,
        map_variant=map_variant,
        ties=ties,
        device=device,
        progress=progress,
        budget=budget // 2 if parallel else budget,
    )
    if sharded is None and histogram_path_applies(i2t, t2i):  # Hamming codes: per-query distance histograms
        stats = histogram_stats(
            i2t, c2i, lab if labels is not None else None,  # type: ignore[arg-type]
            map_ks=map_ks, map_variant=map_variant, ties=ties, budget=budget,
        )  # fmt: skip
    elif sharded is not None:  # torch.distributed: every rank gets every direction's per-query stats
        stats = sharded.run_directions(
            jobs,
            labels=lab if labels is not None else None,
            caption_map=c2i_t if labels is not None else None,
            parallel=parallel,
            **common,
        )
    else:
        with budget_shared_by(2 if parallel else 1, budget):
            stats = _run_directions(jobs, parallel, common, collect)
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
        "n_classes": None if labels is None else int(lab.shape[1]),
        "memory_budget": budget,
        "seconds": round(time.perf_counter() - started, 4),
    }
    report = Report(instance=instance, category=category, settings=settings, per_query=stats)
    if judgment_sets:
        report.judged = judged_pass.judged_section({"i2t": i2t, "t2i": t2i}, judgment_sets, collect, budget=budget)
        judged_seconds = round(sum(c.seconds for c in collect.values()), 4)
        settings.update(ndcg_ks=list(judged[1]), gain=judged[2], judged_seconds=judged_seconds)
        settings.update(seconds=round(time.perf_counter() - started, 4))
    if sharded is not None:
        shard_costs.annotate(sharded, report)
    return report


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


def _join_torchrun(device: Any) -> None:
    """Under torchrun (WORLD_SIZE > 1) join the process group first: it picks this rank's GPU."""
    from fico_registry.runtime.distributed import init_if_launched

    init_if_launched(device)


def _sharding(device: Any) -> Any:
    """The torch.distributed sharding of this evaluation (evaluator.sharded), or None in one process."""
    from fico_registry.evaluator.sharded import sharding

    return sharding(device)


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


def evaluate(
    model: Any,
    corpus: Any,
    *,
    config: str | dict[str, Any] = "default",
    checkpoint: Any = None,
    device: str | torch.device | None = "auto",
    batch_size: int = 32,
    cache: Any = True,
    rerank_k: int | None = None,
    outside_topk: str = "keep",
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    map_ks: Sequence[int | None] = DEFAULT_MAP_KS,
    ties: str = "expected",
    map_variant: str = "fico",
    memory_budget: int | str | None = None,
    progress: bool | None = None,
    keep_outputs: dict[str, Any] | None = None,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    gain: str = "linear",
) -> Report:
    """Evaluate a model (a loaded Model or a registered name) on a Corpus, end to end.

    Inputs come from the corpus as the model card declares them (image files, captions,
    attached features such as "regions", or a registered feature pipeline); outputs go through
    the embedding cache (cache=True: $FICO_HOME/embeddings; a path or EmbeddingCache; False: off).
    Similarity models are scored by the engine: cross-attention over all pairs, or fusion
    re-rank of each query's first-stage top-k (rerank_k, default the card's), with
    outside_topk="keep" (first-stage order below the re-ranked ones; mAP@N defined) or
    "exclude" (the paper's convention: mAP@N and PR11 reported as null).
    keep_outputs: a dict that receives the encoder outputs ("images", "texts") and, for
    cross-attention models scored in one process, the (n_images, n_texts) matrix ("i2t").
    The corpus' own judgments (corpus.judgments, e.g. ECCV Caption / CxC) add report.judged.
    """
    from fico_registry.models.loading import Model, load_model
    from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention

    started = time.perf_counter()
    if outside_topk not in ("keep", "exclude"):
        raise OptionError(f"outside_topk must be 'keep' or 'exclude', got {outside_topk!r}")
    sharded = _sharding(device)  # joins torchrun's group before the model picks its GPU
    if sharded is not None:  # before any encoding: judged metrics are not computed sharded
        judged_pass.refuse_sharded(getattr(corpus, "judgments", None) or {})
    if not isinstance(model, Model):
        model = load_model(
            model, config=config, checkpoint=checkpoint, device=None if device == "auto" else str(device)
        )
    dev = resolve_device(model.device if device == "auto" else device)
    spec = model.spec
    encoded = _encode_corpus(model, corpus, dev, _embedding_store(cache), sharded, batch_size, progress)

    img_out, txt_out = encoded["image"].outputs, encoded["text"].outputs
    if keep_outputs is not None:
        keep_outputs.update(images=img_out, texts=txt_out)
    costs: dict[str, Any] = {"encode": {"images": encoded["image"].cost(), "texts": encoded["text"].cost()}}
    metric_options: dict[str, Any] = {
        "recall_ks": recall_ks,
        "map_ks": map_ks,
        "ties": ties,
        "map_variant": map_variant,
        "memory_budget": memory_budget,
        "progress": progress,
        "ndcg_ks": ndcg_ks,
        "gain": gain,
    }
    cost = None
    if spec.output in (OutputKind.CONTINUOUS, OutputKind.BINARY):
        img = img_out["embeds"] if isinstance(img_out, dict) else img_out
        txt = txt_out["embeds"] if isinstance(txt_out, dict) else txt_out
        bits = getattr(model, "width", None) if spec.output is OutputKind.BINARY else None
        report = evaluate_embeddings(
            img,
            txt,
            corpus.caption_to_image,
            corpus.labels,
            measure=spec.measure,
            device=dev,
            bits=bits,
            judgments=corpus.judgments,
            **metric_options,
        )
    elif spec.query_time_attention is QueryTimeAttention.CROSS_ATTENTION:
        report, cost = _evaluate_cross_attention(
            model, corpus, img_out, txt_out, dev, sharded, started, keep_outputs, costs, metric_options
        )
    else:
        report, cost = _evaluate_fusion_rerank(
            model, corpus, img_out, txt_out, dev, rerank_k, outside_topk, started, costs, metric_options
        )
    report.settings["batch_size"] = batch_size
    report.settings["seconds"] = round(time.perf_counter() - started, 4)
    report.model = model.provenance()
    report.corpus = {
        "name": corpus.name,
        "split": corpus.split,
        "content_hash": corpus.content_hash,
        "n_images": corpus.n_images,
        "n_texts": corpus.n_captions,
        "n_classes": None if corpus.labels is None else int(corpus.labels.shape[1]),
        "duplication": corpus.duplication,
    }
    if sharded is None:
        report.costs = costs
    else:  # keep the ranking's costs.distributed; totals and per-rank seconds over all ranks
        report.costs = {**costs, **(report.costs or {})}
        shard_costs.add_evaluate_costs(sharded, report, encoded, cost if "query_time" in costs else None)
    return report


def _embedding_store(cache: Any) -> Any:
    """evaluate's `cache` argument as an EmbeddingCache, or None when caching is off."""
    from fico_registry.data.cache import EmbeddingCache

    if cache is True:
        return EmbeddingCache()
    if isinstance(cache, EmbeddingCache):
        return cache
    if cache:
        return EmbeddingCache(cache)
    return None


def _encode_corpus(
    model: Any, corpus: Any, dev: torch.device, store: Any, sharded: Any, batch_size: int, progress: bool | None
) -> dict[str, Any]:
    """Both sides of the corpus through the model (and the embedding cache; split over ranks when sharded)."""
    from fico_registry.data.cache import embedding_key
    from fico_registry.models.encoding import encode_side, encode_side_sharded
    from fico_registry.models.inputs import input_source
    from fico_registry.models.plugin_source import code_identity

    spec = model.spec
    pipeline_config = "tiny" if model.config_name == "tiny" else "default"
    encoded = {}
    inputs = corpus.without_judgments()  # judgments change the content hash, not the embeddings
    for side in ("image", "text"):
        source = input_source(
            model, inputs, side, device=str(dev), cache=store, progress=progress, pipeline_config=pipeline_config
        )
        key = None
        if store is not None:
            ck = model.checkpoint
            key = embedding_key(
                model=spec.name,
                side="images" if side == "image" else "texts",
                corpus_hash=inputs.content_hash,
                config=model.config,
                checkpoint_sha256=None if ck is None else (ck.sha256 or ck.source),
                device=dev.type,
                dtype=str(model.config.get("precision", "fp32")),
                input=source.fingerprint(),
                random_init=ck is None,
                # the code: distribution version, and a source hash for editable / path installs
                **code_identity(spec.distribution, spec.factory),
            )
            if ck is None and model.config_name != "tiny":
                key = None  # random weights differ per build unless seeded: never cache them
        options = {"batch_size": batch_size, "cache": store, "cache_key": key, "progress": progress}
        if sharded is not None:
            encoded[side] = encode_side_sharded(model, source, side, sharded, **options)
        else:
            encoded[side] = encode_side(model, source, side, **options)
    return encoded


def _evaluate_cross_attention(
    model: Any,
    corpus: Any,
    img_out: Any,
    txt_out: Any,
    dev: torch.device,
    sharded: Any,
    started: float,
    keep_outputs: dict[str, Any] | None,
    costs: dict[str, Any],
    options: dict[str, Any],
) -> tuple[Report, Any]:
    """Cross-attention over all pairs: each rank's rows when sharded, else the whole matrix (kept if asked)."""
    from fico_registry.evaluator.query_time import ScorerCost, cross_attention_matrix

    cost = ScorerCost()
    progress = options["progress"]
    shards = None
    if sharded is not None:  # each rank keeps its rows of both directions, not the whole matrix
        shards = sharded.cross_attention_shards(model, img_out, txt_out, device=dev, cost=cost, progress=progress)
    if shards is not None:
        i2t_rows, t2i_rows = shards
        ties, variant = options["ties"], options["map_variant"]
        recall_ks, map_ks = _check_options(options["recall_ks"], options["map_ks"], ties, variant)
        settings = {"measure": "precomputed", "input_dtype": str(i2t_rows.rows.dtype), "separate_t2i": False}
        report = _evaluate(
            i2t_rows,
            t2i_rows,
            _check_mapping(corpus.caption_to_image, corpus.n_images, corpus.n_captions),
            corpus.labels,
            recall_ks,
            map_ks,
            ties,
            variant,
            dev,
            options["memory_budget"],
            progress,
            settings,
            started,
            sharded=sharded,
            judged=(corpus.judgments, options["ndcg_ks"], options["gain"]),
        )
    else:
        score_all = cross_attention_matrix if sharded is None else sharded.cross_attention_matrix
        matrix = score_all(model, img_out, txt_out, device=dev, cost=cost, progress=progress)
        if keep_outputs is not None:
            keep_outputs["i2t"] = matrix
        report = evaluate_similarity(
            matrix, corpus.caption_to_image, labels=corpus.labels, device=dev, judgments=corpus.judgments, **options
        )
    costs["query_time"] = cost.to_dict("cross-attention")
    return report, cost


def _evaluate_fusion_rerank(
    model: Any,
    corpus: Any,
    img_out: Any,
    txt_out: Any,
    dev: torch.device,
    rerank_k: int | None,
    outside_topk: str,
    started: float,
    costs: dict[str, Any],
    options: dict[str, Any],
) -> tuple[Report, Any]:
    """Fusion re-rank: each query's first-stage top-k re-scored by the model, the rest per outside_topk."""
    from fico_registry.evaluator.query_time import RerankScores, ScorerCost

    spec = model.spec
    k = int(rerank_k or model.config.get("rerank_k") or spec.rerank_k or 128)
    first_img = img_out["embeds"].to(dev).float()
    first_txt = txt_out["embeds"].to(dev).float()
    if spec.measure == "cosine":
        first_img = torch.nn.functional.normalize(first_img, dim=-1)
        first_txt = torch.nn.functional.normalize(first_txt, dim=-1)
    cost = ScorerCost()
    sources = {
        side: RerankScores(
            EmbeddingScores(first_img, first_txt, spec.measure, side),
            model,
            img_out,
            txt_out,
            k,
            outside_topk,
            dev,
            cost=cost,
        )
        for side in ("image", "text")
    }
    report = _evaluate(
        sources["image"],
        sources["text"],
        corpus.caption_to_image,
        corpus.labels,
        options["recall_ks"],
        options["map_ks"],
        options["ties"],
        options["map_variant"],
        dev,
        options["memory_budget"],
        options["progress"],
        {"measure": f"fusion-rerank ({spec.measure} first stage)"},
        started,
        ranked_to=k if outside_topk == "exclude" else None,
        judged=(corpus.judgments, options["ndcg_ks"], options["gain"]),
    )
    costs["query_time"] = cost.to_dict("fusion-rerank")
    report.settings.update({"rerank_k": k, "outside_topk": outside_topk})
    return report, cost
