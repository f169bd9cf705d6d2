"""Registration only: imported at discovery time, so it imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fico_registry import FeatureSpec, hookimpl

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's ImageNet VGG-19; the name carries its sha256 prefix

_VGG_COMMON: dict[str, Any] = {"batch_size": 16, "seed": 0, "precision": "fp32"}
VGG_CONFIGS: dict[str, dict[str, Any]] = {
    # torchvision's ImageNet evaluation transform for these weights: shorter side 256, centre 224.
    "default": {
        **_VGG_COMMON,
        "arch": "vgg19",
        "weights": VGG19_FILE,
        "weights_sha256": "dcbb9e9d",
        "resize": 256,
        "crop": 224,
    },
    # The Caffe-era habit of warping the whole image to 224 x 224 (no crop).
    "warp224": {
        **_VGG_COMMON,
        "arch": "vgg19",
        "weights": VGG19_FILE,
        "weights_sha256": "dcbb9e9d",
        "resize": [224, 224],
        "crop": 224,
    },
    # VGG-19 on images warped to 112 x 112 (a quarter of the FLOPs of 224): CPU runs on small images
    # such as the synthetic corpus's 128 px scenes. Not the published protocol.
    "lowres": {
        **_VGG_COMMON,
        "arch": "vgg19",
        "weights": VGG19_FILE,
        "weights_sha256": "dcbb9e9d",
        "resize": [112, 112],
        "crop": 112,
    },
    # The published architecture with random weights: for timing only.
    "random": {**_VGG_COMMON, "arch": "vgg19", "weights": None, "resize": 256, "crop": 224},
    # NOT VGG-19: a narrow VGG-shaped net (2 conv stages, 32 px input) whose fc7 is still 4096-d.
    "tiny": {
        **_VGG_COMMON,
        "arch": "tiny",
        "weights": None,
        "resize": 36,
        "crop": 32,
        "tiny_layers": [8, "M", 16, "M"],
        "tiny_pool": 2,
        "tiny_fc6": 64,
        "tiny_classes": 10,
    },
}

# PV-DBOW with skip-gram word training, as the pre-trained models of Lau & Baldwin (2016) that the
# hashing literature used for 300-d MS-COCO caption vectors; inference as their infer_test.py
# (start alpha 0.01) with fewer epochs than their 1000, see the README.
_D2V_COMMON: dict[str, Any] = {
    "vector_size": 300,
    "dm": 0,
    "dbow_words": 1,
    "window": 15,
    "sample": 1e-5,
    "negative": 5,
    "hs": 0,
    "alpha": 0.025,
    "min_alpha": 0.0001,
    "seed": 0,
    "train_workers": 1,
    "infer_alpha": 0.01,
    "infer_min_alpha": 0.0001,
    "model": None,
    "train_split": "train",
    "cache_trained": True,
}
D2V_CONFIGS: dict[str, dict[str, Any]] = {
    "default": {**_D2V_COMMON, "min_count": 5, "epochs": 20, "infer_epochs": 200},
    # No down-sampling of frequent words. sample=1e-5 suits corpora with large vocabularies (Flickr30K,
    # MS-COCO); on a corpus whose every word is frequent (the synthetic one: ~100 words) it drops
    # nearly all training words and the vectors lose the captions' content.
    "small-corpus": {**_D2V_COMMON, "min_count": 5, "epochs": 20, "infer_epochs": 200, "sample": 0.0},
    # Lau & Baldwin's inference setting, 5x slower.
    "infer1000": {**_D2V_COMMON, "min_count": 5, "epochs": 20, "infer_epochs": 1000},
    # Same 300-d output; a few epochs on the evaluated captions themselves: for tests only.
    "tiny": {
        **_D2V_COMMON,
        "min_count": 1,
        "window": 5,
        "sample": 0.0,
        "epochs": 5,
        "infer_epochs": 10,
        "train_split": None,
        "cache_trained": False,
    },
}


@hookimpl
def fico_feature_pipelines(register: Callable[[FeatureSpec], None]) -> None:
    register(
        FeatureSpec(
            name="vgg19-fc7",
            modality="image",
            factory="fico_features.vgg_pipeline:build",
            dim=4096,
            description="VGG-19 (torchvision, ImageNet weights from a local vgg19-dcbb9e9d.pth) fc7 after its "
            "ReLU, eval mode (dropout off); ImageNet preprocessing. Without the weights file: random init, "
            "logged.",
            configs=VGG_CONFIGS,
        )
    )
    register(
        FeatureSpec(
            name="doc2vec",
            modality="text",
            factory="fico_features.doc2vec_pipeline:build",
            dim=300,
            description="gensim Doc2Vec (PV-DBOW, 300-d) caption vectors; deterministic inference. Loads a model "
            "saved by this plugin (config 'model'), or trains one on the dataset's training captions.",
            configs=D2V_CONFIGS,
        )
    )
