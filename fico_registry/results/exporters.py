"""Exporters: a `RunResult` as MTEB `TaskResult` files and as CLIP_benchmark result JSON."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fico_registry.results.schema import DIRECTIONS, Direction, RunResult, write_text_atomic

_MTEB_DATASET_NAMES = {
    "flickr30k": "Flickr30k",
    "flickr8k": "Flickr8k",
    "coco": "MSCOCO",
    "mscoco": "MSCOCO",
    "nus-wide": "NUSWIDE",
}


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)


def mteb_task_name(result: RunResult, direction: Direction, prefix: str = "Fico") -> str:
    """e.g. FicoFlickr30kT2IRetrieval. The prefix keeps these apart from MTEB's own (M-BEIR based)
    Flickr30k / MSCOCO tasks, which use other splits and candidate pools: not comparable numbers."""
    dataset = _MTEB_DATASET_NAMES.get(result.corpus.dataset.lower(), _camel(result.corpus.dataset))
    return f"{prefix}{dataset}{direction.upper()}Retrieval"


def _hit_key(metric: str) -> str | None:
    match = re.fullmatch(r"R@(\d+)", metric)
    return f"hit_rate_at_{match.group(1)}" if match else None


def to_mteb(
    result: RunResult, *, prefix: str = "Fico", languages: Sequence[str] = ("eng-Latn",)
) -> dict[str, dict[str, Any]]:
    """MTEB TaskResult documents, one per direction, keyed by task name.

    Our R@K ("at least one positive in the top K") is MTEB's `hit_rate_at_k`; MTEB's
    `recall_at_k` and `map_at_k` are other quantities and are not filled. MedR, MeanR and the
    category-level mAP@K (label relevance) go in under `fico_`-prefixed keys. `dataset_revision`
    is the corpus content hash, so results on different ground truth never mix; `main_score` is
    the hit rate at the smallest K.
    """
    out: dict[str, dict[str, Any]] = {}
    for direction in DIRECTIONS:
        instance = result.metrics.instance[direction]
        scores: dict[str, Any] = {}
        for key, value in instance.items():
            hit = _hit_key(key)
            if hit:
                scores[hit] = value
        scores["fico_median_rank"] = instance.get("MedR")
        scores["fico_mean_rank"] = instance.get("MeanR")
        if result.metrics.category is not None:
            for key, category_value in result.metrics.category[direction].items():
                if key.startswith("mAP@"):
                    scores[f"fico_category_map_at_{key.split('@')[1].lower()}"] = category_value
        first_k = min(result.settings.recall_ks)
        scores["main_score"] = instance.get(f"R@{first_k}")
        scores["hf_subset"] = "default"
        scores["languages"] = list(languages)
        total = result.costs.evaluation_seconds
        out[mteb_task_name(result, direction, prefix)] = {
            "dataset_revision": result.corpus.content_hash,
            "task_name": mteb_task_name(result, direction, prefix),
            "mteb_version": None,
            "scores": {result.corpus.split: [scores]},
            "evaluation_time": total,
            "kg_co2_emissions": None,
            "date": result.date.timestamp(),
        }
    return out


_MTEB_SIMILARITY = {"cosine": "cosine", "inner_product": "dot", "euclidean": "euclidean", "maxsim": "max_sim"}


def mteb_model_meta(result: RunResult) -> dict[str, Any]:
    """The common fields of MTEB's model_meta.json for this model (unknowns are null)."""
    m = result.model
    return {
        "name": m.name,
        "revision": m.checkpoint_sha256 or m.version,
        "release_date": None,
        "languages": ["eng-Latn"],
        "n_parameters": None,
        "memory_usage_mb": None,
        "max_tokens": None,
        "embed_dim": None,
        "license": None,
        "open_weights": None,
        "public_training_code": None,
        "public_training_data": None,
        "framework": ["PyTorch"],
        "reference": m.url,
        "similarity_fn_name": _MTEB_SIMILARITY.get(result.settings.measure),
        "use_instructions": False,
        "training_datasets": None,
        "modalities": ["image", "text"],
        "is_cross_encoder": m.output == "similarity",
    }


def _path_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "unnamed"


def write_mteb(result: RunResult, root: str | os.PathLike, *, prefix: str = "Fico") -> list[Path]:
    """MTEB's results layout: root/{org__model}/{revision}/{Task}.json + model_meta.json."""
    revision = result.model.checkpoint_sha256 or result.model.version or "no_revision_available"
    folder = Path(root) / _path_part(result.model.name.replace("/", "__")) / _path_part(revision)
    written = []
    for task, doc in to_mteb(result, prefix=prefix).items():
        written.append(write_text_atomic(folder / f"{task}.json", json.dumps(doc, indent=2, allow_nan=False) + "\n"))
    meta = json.dumps(mteb_model_meta(result), indent=2, allow_nan=False) + "\n"
    written.append(write_text_atomic(folder / "model_meta.json", meta))
    return written


def to_clip_benchmark(result: RunResult, *, language: str = "en") -> dict[str, Any]:
    """CLIP_benchmark's zeroshot_retrieval result: image_retrieval = text->image (our t2i),
    text_retrieval = image->text (our i2t); both are "at least one positive in the top K"."""
    metrics: dict[str, Any] = {}
    for key, value in result.metrics.instance["t2i"].items():
        if _hit_key(key):
            metrics[f"image_retrieval_recall@{key[2:]}"] = value
    for key, value in result.metrics.instance["i2t"].items():
        if _hit_key(key):
            metrics[f"text_retrieval_recall@{key[2:]}"] = value
    m = result.model
    return {
        "dataset": result.corpus.dataset,
        "model": m.name,
        "pretrained": m.checkpoint_sha256 or m.checkpoint_source or m.config_name or "",
        "task": "zeroshot_retrieval",
        "metrics": metrics,
        "language": language,
    }


def clip_benchmark_filename(result: RunResult, *, language: str = "en") -> str:
    """CLIP_benchmark's default output name: {dataset}_{pretrained}_{model}_{language}_{task}.json"""
    doc = to_clip_benchmark(result, language=language)
    parts = (doc["dataset"], doc["pretrained"] or "none", doc["model"], language, doc["task"])
    return "_".join(_path_part(p) for p in parts) + ".json"


def write_clip_benchmark(result: RunResult, folder: str | os.PathLike, *, language: str = "en") -> Path:
    doc = to_clip_benchmark(result, language=language)
    target = Path(folder) / clip_benchmark_filename(result, language=language)
    return write_text_atomic(target, json.dumps(doc, allow_nan=False) + "\n")
