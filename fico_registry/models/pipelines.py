"""Run a registered feature pipeline (e.g. VGG-19 fc7, Doc2Vec) over a corpus, through the cache."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from fico_registry.data.corpus import Corpus
from fico_registry.plugin_api.cards import FeatureSpec
from fico_registry.plugin_api.registry import resolve_callable


def build_pipeline(spec: FeatureSpec, config: str | Mapping[str, Any] = "default", device: str = "cpu") -> Any:
    """(pipeline, config name): a named config of the card, or a full config dict (named by its hash).

    A dict is what a trained model carries for its own inputs (e.g. the Doc2Vec model fitted on
    its training captions), so evaluation computes exactly the features it was trained on.
    """
    factory = resolve_callable(spec.factory)
    if isinstance(config, Mapping):
        digest = hashlib.sha256(json.dumps(dict(config), sort_keys=True, default=str).encode()).hexdigest()[:12]
        return factory(config=dict(config), device=device), f"custom-{digest}"
    name = config if config in spec.configs else "default"
    return factory(config=dict(spec.configs[name]), device=device), name


def pipeline_features(
    spec: FeatureSpec,
    corpus: Corpus,
    side: str,
    *,
    device: str = "cpu",
    cache: Any = None,
    progress: bool | None = None,
    config: str | Mapping[str, Any] = "default",
    batch_size: int = 64,
) -> tuple[np.ndarray, str]:
    """(n_items, dim) features of one corpus side, and an identity string for cache keys."""
    from fico_registry.data.cache import embedding_key

    if (side == "image") != (spec.modality == "image"):
        raise ValueError(f"pipeline {spec.name} computes {spec.modality} features, not {side} features")
    pipeline, config_name = build_pipeline(spec, config, device)
    if hasattr(pipeline, "prepare"):
        pipeline.prepare(corpus)  # e.g. a Doc2Vec model trained on the corpus's training captions
    fingerprint = pipeline.fingerprint()
    n = corpus.n_images if side == "image" else corpus.n_captions

    def encode_block(start: int, stop: int) -> Any:
        if side == "image":
            items = [corpus.load_image(i) for i in range(start, stop)]
        else:
            items = [corpus.captions[j] for j in range(start, stop)]
        return pipeline.compute(items).detach().cpu()

    key = embedding_key(
        model=f"pipeline:{spec.name}",
        side="images" if side == "image" else "texts",
        corpus_hash=corpus.content_hash,
        config=config_name,
        fingerprint=fingerprint,
    )
    if cache is None:
        parts = [encode_block(s, min(n, s + batch_size)).numpy() for s in range(0, n, batch_size)]
        array = np.concatenate(parts)
    else:
        array = cache.get_or_encode(key, n, encode_block, block_size=batch_size * 4, progress=bool(progress))
    identity = f"{spec.name}:{config_name}:{fingerprint}"
    return np.asarray(array), identity
