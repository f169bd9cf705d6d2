"""The model-running paths of evaluate(model, corpus): encoding a corpus, and query-time scoring.

- encode_corpus: both sides through the model and the embedding cache (split over ranks when sharded);
- evaluate_embedding_model: embeddings or hash codes, ranked by the engine alone;
- evaluate_cross_attention: every (image, text) pair through model.score;
- evaluate_fusion_rerank: each query's first-stage top-k re-scored by the model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from fico_registry.evaluator.checks import check_mapping
from fico_registry.evaluator.evaluate_sources import evaluate_sources
from fico_registry.evaluator.options import MetricOptions
from fico_registry.evaluator.report import Report
from fico_registry.evaluator.sources import EmbeddingScores


def embedding_store(cache: Any) -> Any:
    """evaluate's `cache` argument as an EmbeddingCache, or None when caching is off."""
    from fico_registry.data.cache import EmbeddingCache

    if cache is True:
        return EmbeddingCache()
    if isinstance(cache, EmbeddingCache):
        return cache
    if cache:
        return EmbeddingCache(cache)
    return None


def encode_corpus(
    model: Any, corpus: Any, dev: torch.device, store: Any, seam: Any, batch_size: int, progress: bool | None
) -> dict[str, Any]:
    """Both sides of the corpus through the model (and the embedding cache; split over ranks when sharded)."""
    from fico_registry.data.cache import embedding_key
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
        encoded[side] = seam.encode_side(model, source, side, **options)
    return encoded


def evaluate_embedding_model(
    model: Any, corpus: Any, outputs: tuple[Any, Any], dev: torch.device, options: MetricOptions
) -> Report:
    """Embeddings or hash codes (a dict's "embeds"): ranked by the engine, no query-time model calls."""
    from fico_registry.evaluator.evaluate import evaluate_embeddings
    from fico_registry.plugin_api.cards import OutputKind

    img, txt = (out["embeds"] if isinstance(out, dict) else out for out in outputs)
    bits = getattr(model, "width", None) if model.spec.output is OutputKind.BINARY else None
    return evaluate_embeddings(
        img,
        txt,
        corpus.caption_to_image,
        corpus.labels,
        measure=model.spec.measure,
        device=dev,
        bits=bits,
        judgments=corpus.judgments,
        **dataclasses.asdict(options),
    )


def evaluate_cross_attention(
    model: Any,
    corpus: Any,
    outputs: tuple[Any, Any],
    dev: torch.device,
    seam: Any,
    started: float,
    keep_outputs: dict[str, Any] | None,
    options: MetricOptions,
) -> tuple[Report, Any]:
    """Cross-attention over all pairs: each rank's rows when sharded, else the whole matrix (kept if asked)."""
    from fico_registry.evaluator.evaluate import evaluate_similarity
    from fico_registry.evaluator.query_time import ScorerCost

    img_out, txt_out = outputs
    cost = ScorerCost()
    progress = options.progress
    # sharded: each rank keeps its rows of both directions, not the whole matrix (None: nothing to split)
    shards = seam.cross_attention_shards(model, img_out, txt_out, device=dev, cost=cost, progress=progress)
    if shards is not None:
        i2t_rows, t2i_rows = shards
        options = options.checked()
        report = evaluate_sources(
            i2t_rows,
            t2i_rows,
            check_mapping(corpus.caption_to_image, corpus.n_images, corpus.n_captions),
            corpus.labels,
            options,
            device=dev,
            settings={"measure": "precomputed", "input_dtype": str(i2t_rows.rows.dtype), "separate_t2i": False},
            started=started,
            sharded=seam,
            judgments=corpus.judgments,
        )
    else:
        matrix = seam.cross_attention_matrix(model, img_out, txt_out, device=dev, cost=cost, progress=progress)
        if keep_outputs is not None:
            keep_outputs["i2t"] = matrix
        report = evaluate_similarity(
            matrix,
            corpus.caption_to_image,
            labels=corpus.labels,
            device=dev,
            judgments=corpus.judgments,
            **dataclasses.asdict(options),
        )
    return report, cost


def evaluate_fusion_rerank(
    model: Any,
    corpus: Any,
    outputs: tuple[Any, Any],
    dev: torch.device,
    rerank_k: int | None,
    outside_topk: str,
    started: float,
    options: MetricOptions,
) -> tuple[Report, Any]:
    """Fusion re-rank: each query's first-stage top-k re-scored by the model, the rest per outside_topk."""
    from fico_registry.evaluator.query_time import ScorerCost

    spec = model.spec
    k = int(rerank_k or model.config.get("rerank_k") or spec.rerank_k or 128)
    cost = ScorerCost()
    sources = rerank_sources(model, outputs, k, outside_topk, dev, cost)
    report = evaluate_sources(
        sources["image"],
        sources["text"],
        corpus.caption_to_image,
        corpus.labels,
        options,
        device=dev,
        settings={"measure": f"fusion-rerank ({spec.measure} first stage)"},
        started=started,
        ranked_to=k if outside_topk == "exclude" else None,
        judgments=corpus.judgments,
    )
    report.settings.update({"rerank_k": k, "outside_topk": outside_topk})
    return report, cost


def rerank_sources(
    model: Any, outputs: tuple[Any, Any], k: int, outside_topk: str, dev: torch.device, cost: Any
) -> dict[str, Any]:
    """Both directions' fusion re-rank sources: the "embeds" first stage (normalised for cosine), top k re-scored."""
    from fico_registry.evaluator.query_time import RerankScores

    img_out, txt_out = outputs
    measure = model.spec.measure
    first_img = img_out["embeds"].to(dev).float()
    first_txt = txt_out["embeds"].to(dev).float()
    if measure == "cosine":
        first_img = torch.nn.functional.normalize(first_img, dim=-1)
        first_txt = torch.nn.functional.normalize(first_txt, dim=-1)
    return {
        side: RerankScores(
            EmbeddingScores(first_img, first_txt, measure, side),
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
