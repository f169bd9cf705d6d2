"""Registration only: imported at discovery time, so it imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fico_registry import Checkpoint, Family, ModelSpec, OutputKind, hookimpl
from fico_registry.plugin_api import TrainerSpec, trainer_hook

PAPER = "Li, Zhang, Li, Li, Fu. Visual Semantic Reasoning for Image-Text Matching. ICCV 2019"
URL = "https://github.com/KunpengLi1994/VSRN"
DRIVE = "https://drive.google.com/file/d/1y8Ywa2vrPB7m_Q_Ku69z7EdwsLB9gsJW"  # the README"s pretrained models

# Words of the synthetic corpus and the conformance kit"s captions: enough for tiny tests.
# fmt: off
TINY_WORDS = (
    "a", "an", "the", "of", "in", "on", "at", "to", "and", "with", "is", "there", "one", "two", "three",
    "image", "picture", "scene", "shapes", "shape", "background", "red", "green", "blue", "yellow", "orange",
    "purple", "pink", "brown", "black", "gray", "grey", "white", "violet", "small", "large", "big", "little",
    "tiny", "circle", "circles", "square", "squares", "triangle", "triangles", "star", "stars", "diamond",
    "cross", "heart", "ring", "crescent", "moon", "tile", "above", "below", "left", "right", "top", "bottom",
    "corner", "center", "next", ",", ".",
)
# fmt: on

# Architecture: train.py defaults with the README"s arguments (Flickr30K: data_name f30k_precomp).
ARCH_DEFAULTS: dict[str, Any] = {
    "data_name": "f30k_precomp",
    "img_dim": 2048,
    "embed_size": 2048,
    "word_dim": 300,
    "num_layers": 1,
    "use_abs": False,
    "no_imgnorm": False,
    "measure": "cosine",
}
# Settings of this adapter that the original opt never had.
ADAPTER_DEFAULTS: dict[str, Any] = {
    "vocab_path": None,  # the original {data_name}_vocab.pkl; default: beside the checkpoint
    "vocab_words": None,  # in-memory word list for random init (tiny configs)
    "vocab_size": 8481,  # embedding rows for random init without a vocabulary (f30k's)
    "tokenizer": "treebank",  # NLTK < 3.5 word rules, as the published vocabularies were built
    "lowercase": "ascii",  # Python 2 str.lower()
    "precision": "fp32",
    "seed": 0,  # random init only
}
COCO = {"data_name": "coco_precomp", "vocab_size": 10006}
TINY = {"embed_size": 8, "word_dim": 8, "vocab_words": list(TINY_WORDS)}  # regions stay 2048-d
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {**ARCH_DEFAULTS, **ADAPTER_DEFAULTS},  # Flickr30K: bn after the region GRU, no first l2norm
    "coco": {**ARCH_DEFAULTS, **ADAPTER_DEFAULTS, **COCO},  # MS-COCO: l2norm over regions after fc, no bn
    "tiny": {**ARCH_DEFAULTS, **ADAPTER_DEFAULTS, **TINY},
    "tiny-coco": {**ARCH_DEFAULTS, **ADAPTER_DEFAULTS, **COCO, **TINY},
}

# the ensemble's members may also be named in its config (instead of a checkpoint folder)
ENSEMBLE_CONFIGS = {name: {**config, "member_checkpoints": None} for name, config in CONFIGS.items()}

_FLICKR = "pretrain_model/flickr"
_COCO = "pretrain_model/coco"


def _member(folder: str, file: str, what: str) -> Checkpoint:
    return Checkpoint(
        source=f"{folder}/{file}",
        format="pth.tar",
        description=f"{what}; from {DRIVE} (unpack into $FICO_HOME/checkpoints/), vocabulary beside it",
    )


DESCRIPTION = (
    "Region graph reasoning (4 Rs_GCN blocks) and a GRU over 36 bottom-up regions; GRU caption encoder. "
    "Embeddings are l2-normalised and compared by inner product, as the original evaluation. "
    "Checkpoints are the original .pth.tar (architecture from opt); the vocabulary is the original "
    "{data_name}_vocab.pkl beside the checkpoint (or in its vocab/ folder) or config vocab_path."
)


@hookimpl
def fico_models(register: Callable[[ModelSpec], None]) -> None:
    common: dict[str, Any] = {
        "family": Family.FG,
        "output": OutputKind.CONTINUOUS,
        "measure": "inner_product",
        "image_input": "regions",
        "text_input": "text",
        "paper": PAPER,
        "url": URL,
        "license": "Apache-2.0",
        "extra": {"vocab_file": "{data_name}_vocab.pkl"},
    }
    register(
        ModelSpec(
            name="vsrn",
            factory="fico_vsrn.model:build",
            dim=2048,
            configs=CONFIGS,
            checkpoints={
                "f30k-1": _member(_FLICKR, "model_fliker_1.pth.tar", "Flickr30K model 1"),
                "f30k-2": _member(_FLICKR, "model_fliker_2.pth.tar", "Flickr30K model 2"),
                "coco-1": _member(_COCO, "model_coco_1.pth.tar", "MS-COCO model 1"),
                "coco-2": _member(_COCO, "model_coco_2.pth.tar", "MS-COCO model 2"),
            },
            description=DESCRIPTION,
            **common,
        )
    )
    register(
        ModelSpec(
            name="vsrn-ensemble",
            factory="fico_vsrn.ensemble:build",
            dim=4096,
            configs=ENSEMBLE_CONFIGS,
            checkpoints={
                "f30k": Checkpoint(
                    source=_FLICKR,
                    format="pth.tar",
                    description=f"folder with model_fliker_1/2.pth.tar from {DRIVE} and f30k_precomp_vocab.pkl",
                ),
                "coco": Checkpoint(
                    source=_COCO,
                    format="pth.tar",
                    description=f"folder with model_coco_1/2.pth.tar from {DRIVE} and coco_precomp_vocab.pkl",
                ),
            },
            description="The official evaluation: the average of two VSRN models' similarity matrices, as one "
            "embedding (e1, e2) / sqrt(2), the members' embeddings side by side, whose inner product is that "
            "average. Checkpoint: a folder with the two member .pth.tar files (name order) and the vocabulary, "
            "or config member_checkpoints. " + DESCRIPTION,
            **common,
        )
    )


# train.py argument defaults (the README trains Flickr30K with --max_violation --lr_update 10).
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 128,
    "learning_rate": 0.0002,
    "lr_update": 15,
    "margin": 0.2,
    "max_violation": True,
    "grad_clip": 2.0,
    "val_batch_size": 128,
    "vocab_path": None,  # an original {data_name}_vocab.pkl; default: built from the captions as vocab.py
    "vocab_threshold": 4,
}
TRAIN_RECIPE = (
    "KunpengLi1994/VSRN@777ae74: train.py (argparse defaults, adjust_learning_rate, validate's r1+r5+r1i+r5i), "
    "model.py (ContrastiveLoss with max_violation, Adam, clip_grad_norm), vocab.py (threshold 4), README commands"
)


fico_trainers = trainer_hook(
    TrainerSpec(
        model="vsrn",
        factory="fico_vsrn.train:train",
        description=(
            "VSRN retrieval encoders: hardest-negative triplet loss (margin 0.2), Adam 2e-4 / 10 every lr_update "
            "epochs, grad clip 2; the caption-generation loss of the original is omitted; selected on the "
            "validation split by R@1+R@5."
        ),
        defaults=TRAIN_DEFAULTS,
        paper_recipe=TRAIN_RECIPE,
    )
)
