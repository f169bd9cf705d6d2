"""Timed work of one run, through the core's own code paths (nothing re-implemented here):

- encoding one side of a corpus: fico_registry.models.encoding.encode_side, fed by inputs.input_source;
- exact search of embeddings: the engine's EmbeddingScores blocks + torch.topk, both directions;
- cross-attention: query_time.cross_attention_matrix (every pair), then its top-k both directions;
- fusion re-rank: query_time.RerankScores (first stage, top-k re-scored by score_pairs), both directions.

Times are wall seconds around the whole step (a CUDA device is synchronised before the clock is
read). Scorer seconds come from the core's ScorerCost (only the score / score_pairs calls).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from fico_registry.evaluator.budget import rows_per_block
from fico_registry.evaluator.model_runs import rerank_sources
from fico_registry.evaluator.query_time import ScorerCost, cross_attention_matrix
from fico_registry.evaluator.similarity import prepare_embeddings
from fico_registry.evaluator.sources import EmbeddingScores, MatrixScores
from fico_registry.models.encoding import EncodeResult, encode_side
from fico_registry.models.inputs import input_source
from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention
from fico_registry.studies.costs.budget import SEARCH_BLOCK_BYTES


def query_kind(model: Any) -> str:
    """'exact-search' (embeddings / codes), 'cross-attention' or 'fusion-rerank'."""
    spec = model.spec
    if spec.output is not OutputKind.SIMILARITY:
        return "exact-search"
    return "cross-attention" if spec.query_time_attention is QueryTimeAttention.CROSS_ATTENTION else "fusion-rerank"


def _wall_since(began: float, device: torch.device) -> float:
    """Wall seconds since `began`, once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


def pipeline_config(model: Any) -> str:
    return "tiny" if model.config_name == "tiny" else "default"


def encode_timed(
    model: Any, corpus: Any, side: str, *, batch_size: int, device: torch.device, progress: bool | None
) -> tuple[EncodeResult, dict[str, Any]]:
    """Encode every item of one side; the cost dict has encoder seconds and wall seconds.

    seconds: time inside the encoder calls (what encode_side times); wall_s: the whole loop,
    input decoding and batching included; input_s: building the input source (for a feature
    pipeline, computing its features for the whole corpus).
    """
    began = time.perf_counter()
    source = input_source(
        model, corpus, side, device=str(device), cache=None, progress=progress, pipeline_config=pipeline_config(model)
    )
    input_s = time.perf_counter() - began
    began = time.perf_counter()
    result = encode_side(model, source, side, batch_size=batch_size, cache=None, progress=progress)
    wall = _wall_since(began, device)
    cost = result.cost()
    cost.pop("from_cache", None)
    cost.update({"wall_s": round(wall, 6), "input_s": round(input_s, 6), "batches": result.batches})
    return result, cost


def first_stage(
    model: Any, image_out: Any, text_out: Any, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, str, int]:
    """Prepared first-stage embeddings (normalised / packed as evaluate() does), measure, bits."""
    spec = model.spec
    images = image_out["embeds"] if isinstance(image_out, dict) else image_out
    texts = text_out["embeds"] if isinstance(text_out, dict) else text_out
    bits = getattr(model, "width", None) if spec.output is OutputKind.BINARY else None
    img, txt, info = prepare_embeddings(images, texts, spec.measure, device, bits=bits)
    return img, txt, spec.measure, int(info.get("bits", 0))


def _topk_all(source: Any, k: int, check: Any = None) -> None:
    rows = rows_per_block(source.n_candidates, source.cell_bytes(), SEARCH_BLOCK_BYTES, full_sort=False)
    kk = min(k, source.n_candidates)
    for start in range(0, source.n_queries, rows):
        if check is not None:
            check()
        source.block(start, min(source.n_queries, start + rows)).topk(kk, dim=1)


def exact_search(
    model: Any, image_out: Any, text_out: Any, *, device: torch.device, k: int, check: Any = None
) -> dict[str, Any]:
    """Score every image against every caption and keep each query's top-k, both directions."""
    began = time.perf_counter()
    img, txt, measure, bits = first_stage(model, image_out, text_out, device)
    prepare_s = _wall_since(began, device)
    for side in ("image", "text"):
        _topk_all(EmbeddingScores(img, txt, measure, side, bits), k, check)
    wall = _wall_since(began, device)
    return {
        "kind": "exact-search",
        "measure": measure,
        "seconds": round(wall, 6),
        "prepare_s": round(prepare_s, 6),
        "components": {"search": round(wall, 6)},
        "cells": 2 * img.shape[0] * txt.shape[0],
        "k": k,
    }


def cross_attention(
    model: Any, image_out: Any, text_out: Any, *, device: torch.device, k: int, check: Any = None
) -> dict[str, Any]:
    """Every pair through model.score (the core's blocked loop), then top-k of the matrix both ways."""
    cost = ScorerCost()
    began = time.perf_counter()
    matrix = cross_attention_matrix(model, image_out, text_out, device=device, cost=cost, progress=False)
    attention_s = time.perf_counter() - began
    rank_began = time.perf_counter()
    tensor = torch.from_numpy(matrix)
    _topk_all(MatrixScores(tensor, device=device, name="i2t"), k, check)
    _topk_all(MatrixScores(tensor, transpose=True, device=device, name="t2i"), k, check)
    search_s = _wall_since(rank_began, device)
    return {
        "kind": "cross-attention",
        "seconds": round(attention_s + search_s, 6),
        "components": {"attention": round(attention_s, 6), "search": round(search_s, 6)},
        "scorer_seconds": round(cost.seconds, 6),
        "scorer_calls": cost.calls,
        "pairs": cost.pairs,
        "matrix_bytes": int(matrix.nbytes),
        "k": k,
    }


def fusion_rerank(
    model: Any, image_out: Any, text_out: Any, *, device: torch.device, k: int, rerank_k: int, check: Any = None
) -> dict[str, Any]:
    """First stage for every query, its top `rerank_k` re-scored by score_pairs, both directions."""
    cost = ScorerCost()
    began = time.perf_counter()
    # the sources evaluate() ranks, with outside_topk="keep"
    for source in rerank_sources(model, (image_out, text_out), rerank_k, "keep", device, cost).values():
        _topk_all(source, k, check)
    wall = _wall_since(began, device)
    return {
        "kind": "fusion-rerank",
        "measure": model.spec.measure,
        "seconds": round(wall, 6),
        # the scorer's own time is the re-rank; the rest is the first stage, top-k and gathering
        "components": {"rerank": round(cost.seconds, 6), "search": round(wall - cost.seconds, 6)},
        "scorer_seconds": round(cost.seconds, 6),
        "scorer_calls": cost.calls,
        "pairs": cost.pairs,
        "rerank_k": rerank_k,
        "k": k,
    }


def query_time(
    model: Any, image_out: Any, text_out: Any, *, device: torch.device, k: int, rerank_k: int, check: Any = None
) -> dict[str, Any]:
    kind = query_kind(model)
    if kind == "exact-search":
        return exact_search(model, image_out, text_out, device=device, k=k, check=check)
    if kind == "cross-attention":
        return cross_attention(model, image_out, text_out, device=device, k=k, check=check)
    return fusion_rerank(model, image_out, text_out, device=device, k=k, rerank_k=rerank_k, check=check)


# -- probes: per-unit times measured on a few items, to predict the first scale -------------------
def tile_rows(features: Any, n: int) -> Any:
    """`features` (tensor or dict of tensors) repeated along the item axis to n rows."""
    if isinstance(features, dict):
        return {key: tile_rows(value, n) for key, value in features.items()}
    reps = -(-n // features.shape[0])
    return features.repeat(reps, *([1] * (features.ndim - 1)))[:n]


def probe_search(
    model: Any, image_out: Any, text_out: Any, *, device: torch.device, k: int, n_images: int = 512, n_texts: int = 2048
) -> float:
    """Seconds per image-text cell of the search step (both directions), on tiled probe outputs."""
    kind = query_kind(model)
    if kind == "cross-attention":
        matrix = torch.from_numpy(np.random.default_rng(0).random((n_images, n_texts), dtype=np.float32))
        began = time.perf_counter()
        _topk_all(MatrixScores(matrix, device=device), k)
        _topk_all(MatrixScores(matrix, transpose=True, device=device), k)
    else:
        img, txt, measure, bits = first_stage(
            model, tile_rows(image_out, n_images), tile_rows(text_out, n_texts), device
        )
        _topk_all(EmbeddingScores(img, txt, measure, "image", bits), k)  # warm-up
        began = time.perf_counter()
        for side in ("image", "text"):
            _topk_all(EmbeddingScores(img, txt, measure, side, bits), k)
    return _wall_since(began, device) / (n_images * n_texts)


def probe_scorer(model: Any, image_out: Any, text_out: Any, *, device: torch.device) -> float:
    """Seconds per scored pair of the model's scorer (score or score_pairs), after a warm-up call."""
    from fico_registry.evaluator.query_time import take

    kind = query_kind(model)
    n_img = next(iter(image_out.values())).shape[0] if isinstance(image_out, dict) else image_out.shape[0]
    n_txt = next(iter(text_out.values())).shape[0] if isinstance(text_out, dict) else text_out.shape[0]
    if kind == "cross-attention":
        images, texts = take(image_out, slice(0, n_img), device), take(text_out, slice(0, n_txt), device)
        with torch.inference_mode():
            model.score(images, texts)
            began = time.perf_counter()
            model.score(images, texts)
            seconds = _wall_since(began, device)
        return seconds / (n_img * n_txt)
    n = min(256, n_txt)
    image_index = np.arange(n) % n_img
    images, texts = take(image_out, image_index, device), take(text_out, np.arange(n), device)
    with torch.inference_mode():
        model.score_pairs(images, texts)
        began = time.perf_counter()
        model.score_pairs(images, texts)
        seconds = _wall_since(began, device)
    return seconds / n
