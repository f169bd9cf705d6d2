"""The core's own plugin: built-in datasets and the reference model, registered like any other.

Keep this module free of heavy imports: it is loaded whenever the registry is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fico_registry.plugin_api.cards import DatasetSpec, Family, Input, ModelSpec, OutputKind
from fico_registry.plugin_api.hookspecs import hookimpl

_KARPATHY_SPLITS = ("train", "val", "test")


@hookimpl
def fico_datasets(register: Callable) -> None:
    register(
        DatasetSpec(
            name="synthetic",
            loader="fico_registry.data.synthetic:load",
            description="Rendered shape scenes with 5 generated captions each, category labels and "
            "bottom-up-style region features. Built offline, deterministic by seed, any size.",
            splits=("train", "val", "test"),
            default_split="test",
            files={},
            labels="object types present in the scene (multi-hot)",
            license="CC0-1.0",
        )
    )
    register(
        DatasetSpec(
            name="flickr30k",
            loader="fico_registry.data.karpathy:load_flickr30k",
            description="Flickr30K, Karpathy splits (test: 1,000 images / 5,000 captions).",
            splits=_KARPATHY_SPLITS,
            files={
                "dataset_flickr30k.json": "Karpathy split file (images[].filename/split/sentences[].raw)",
                "flickr30k-images/": "the image folder (optional when only features are used)",
                "flickr30k-karpathy-test-lall.mat": "optional: FiCo-ITR category labels (LAll, one row per test image)",
            },
            labels="FiCo-ITR Query2Label labels (.mat LAll) or any (n_images, n_classes) .npy",
            url="https://shannon.cs.illinois.edu/DenotationGraph/",
        )
    )
    register(
        DatasetSpec(
            name="coco",
            loader="fico_registry.data.karpathy:load_coco",
            description=(
                "MS-COCO 2014, Karpathy splits (test: 5,000 images / 25,010 captions; restval counts as train)."
            ),
            splits=(*_KARPATHY_SPLITS, "restval"),
            files={
                "dataset_coco.json": "Karpathy split file",
                "val2014/, train2014/": "the image folders (optional when only features are used)",
                "annotations/instances_val2014.json": "optional: COCO instances for the 80 category labels",
            },
            labels="COCO instances_*.json (80 categories), or FiCo-ITR coco-karpathy-testall-lall.mat",
            url="https://cocodataset.org/",
        )
    )
    register(
        DatasetSpec(
            name="flickr8k",
            loader="fico_registry.data.karpathy:load_flickr8k",
            description="Flickr8K, Karpathy splits (test: 1,000 images / 5,000 captions).",
            splits=_KARPATHY_SPLITS,
            files={"dataset_flickr8k.json": "Karpathy split file", "Flicker8k_Dataset/": "the image folder"},
        )
    )
    register(
        DatasetSpec(
            name="nus-wide",
            loader="fico_registry.data.labels:load_nus_wide",
            description="NUS-WIDE-10K style hashing benchmark: precomputed image/text features and "
            "10-class labels (query / retrieval split).",
            splits=("query", "retrieval", "train"),
            default_split="query",
            files={
                "nus-wide-10k.mat or .h5": (
                    "XAll (image features), YAll (text features), LAll (labels), param.indexQuery/indexDatabase"
                ),
            },
            labels="LAll, 10 classes",
        )
    )


@hookimpl
def fico_models(register: Callable) -> None:
    common: dict[str, Any] = dict(
        factory="fico_registry.models.reference:build",
        image_input=Input.PIXELS,
        text_input=Input.TEXT,
        configs={
            "default": {"image_size": 48, "width": 48, "embed_dim": 128, "bits": 64, "vocab_size": 2048, "max_len": 24},
            "tiny": {"image_size": 32, "width": 8, "embed_dim": 16, "bits": 16, "vocab_size": 256, "max_len": 12},
        },
        paper="fico-registry reference model (a small CNN + text-transformer dual encoder trained by `fico demo`)",
        license="MIT",
    )
    register(
        ModelSpec(
            name="reference-dual",
            family=Family.FG,
            output=OutputKind.CONTINUOUS,
            dim=128,
            measure="cosine",
            description="Built-in reference dual encoder, continuous head (cosine).",
            **common,
        )
    )
    register(
        ModelSpec(
            name="reference-hash",
            family=Family.CG,
            output=OutputKind.BINARY,
            bits=64,
            description="Built-in reference dual encoder, 64-bit hash head (Hamming).",
            **common,
        )
    )
