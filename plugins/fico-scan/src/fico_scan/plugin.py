"""Registration only: imported at discovery time, so it imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fico_registry import Family, ModelSpec, OutputKind, QueryTimeAttention, hookimpl
from fico_registry.plugin_api import TrainerSpec, trainer_hook

PAPER = "Lee, Chen, Hua, Hu, He. Stacked Cross Attention for Image-Text Matching. ECCV 2018"
URL = "https://github.com/kuanghuei/SCAN"

# Words of the synthetic corpus and the conformance kit's sample captions: enough for tiny tests.
TINY_WORDS = (
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "at",
    "to",
    "and",
    "with",
    "is",
    "are",
    "there",
    "one",
    "two",
    "three",
    "four",
    "shape",
    "shapes",
    "image",
    "picture",
    "scene",
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "pink",
    "brown",
    "black",
    "gray",
    "grey",
    "cyan",
    "white",
    "small",
    "large",
    "big",
    "little",
    "circle",
    "circles",
    "square",
    "squares",
    "triangle",
    "triangles",
    "star",
    "stars",
    "hexagon",
    "diamond",
    "cross",
    "heart",
    "pentagon",
    "ring",
    "ellipse",
    "crescent",
    "above",
    "below",
    "left",
    "right",
    "top",
    "bottom",
    "corner",
    "center",
    "middle",
    "background",
    "next",
)

# The architecture: SCAN train.py defaults with the README's Flickr30K / MS-COCO arguments.
ARCH = {
    "data_name": "f30k_precomp",
    "img_dim": 2048,
    "embed_size": 1024,
    "word_dim": 300,
    "num_layers": 1,
    "bi_gru": True,
    "precomp_enc_type": "basic",
    "no_imgnorm": False,
    "no_txtnorm": False,
    "raw_feature_norm": "clipped_l2norm",
}
# Adapter settings: vocab_size only sizes the embedding of a random model without a vocabulary.
_ADAPTER = {
    "vocab_size": 8481,
    "max_words": 80,
    "tokenizer": "treebank",
    "lowercase": "ascii",
    "score_dtype": "float32",
}
T2I_LSE = {"cross_attn": "t2i", "agg_func": "LogSumExp", "lambda_lse": 6.0, "lambda_softmax": 9.0}
T2I_AVG = {"cross_attn": "t2i", "agg_func": "Mean", "lambda_lse": 6.0, "lambda_softmax": 9.0}
I2T_LSE_F30K = {"cross_attn": "i2t", "agg_func": "LogSumExp", "lambda_lse": 5.0, "lambda_softmax": 4.0}
I2T_LSE_COCO = {"cross_attn": "i2t", "agg_func": "LogSumExp", "lambda_lse": 20.0, "lambda_softmax": 4.0}
I2T_AVG = {"cross_attn": "i2t", "agg_func": "Mean", "lambda_lse": 6.0, "lambda_softmax": 4.0}
COCO = {"data_name": "coco_precomp", "vocab_size": 11353}
TINY = {"embed_size": 16, "word_dim": 8, "vocab_words": list(TINY_WORDS), "max_words": 48}


def merge_configs(*parts: dict[str, Any]) -> dict[str, Any]:
    """One config from its parts, a later part's values winning (IMRAM's cards are built the same way)."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def _config(*parts: dict[str, Any]) -> dict[str, Any]:
    return merge_configs(ARCH, _ADAPTER, *parts)


def _ensemble(first: dict[str, Any], second: dict[str, Any], *shared: dict[str, Any]) -> dict[str, Any]:
    return {**_config(*shared), "members": [first, second], "member_checkpoints": None}


DESCRIPTION = (
    "Per-region (36 x embed_size) and per-word features kept for query-time stacked cross attention; "
    "score() is vectorised over images and captions with length masks. No pretrained SCAN weights were "
    "published: train with the original code and load its model_best.pth.tar (its opt sets the architecture); "
    "the vocabulary is the original {data_name}_vocab.json beside it or config vocab_path."
)


@hookimpl
def fico_models(register: Callable[[ModelSpec], None]) -> None:
    common: dict[str, Any] = {
        "family": Family.FG,
        "output": OutputKind.SIMILARITY,
        "query_time_attention": QueryTimeAttention.CROSS_ATTENTION,
        "dim": 1024,
        "image_input": "regions",
        "text_input": "text",
        "paper": PAPER,
        "url": URL,
        "license": "Apache-2.0",
    }
    register(
        ModelSpec(
            name="scan",
            factory="fico_scan.model:build",
            configs={
                "default": _config(T2I_LSE),  # Flickr30K "SCAN t-i LSE"
                "f30k-t2i-avg": _config(T2I_AVG),
                "f30k-i2t": _config(I2T_LSE_F30K),
                "f30k-i2t-avg": _config(I2T_AVG),
                "coco": _config(T2I_LSE, COCO),
                "coco-t2i-avg": _config(T2I_AVG, COCO),
                "coco-i2t": _config(I2T_LSE_COCO, COCO),
                "coco-i2t-avg": _config(I2T_AVG, COCO),
                "tiny": _config(T2I_LSE, TINY),
                "tiny-i2t": _config(I2T_LSE_F30K, TINY),
            },
            description=DESCRIPTION,
            extra={"vocab_file": "{data_name}_vocab.json", "opt_keys": sorted(ARCH) + sorted(T2I_LSE)},
            **common,
        )
    )
    register(
        ModelSpec(
            name="scan-ensemble",
            factory="fico_scan.ensemble:build",
            configs={
                # the paper's best Flickr30K / COCO ensembles
                "default": _ensemble(T2I_AVG, I2T_LSE_F30K),
                "coco": _ensemble({**T2I_LSE, **COCO}, {**I2T_AVG, **COCO}, COCO),
                "tiny": _ensemble(T2I_AVG, I2T_LSE_F30K, TINY),
            },
            description="Average of two SCAN models' similarity matrices (e.g. t-i AVG + i-t LSE). Checkpoint: a "
            "folder with exactly the two member .pth.tar files (name order) and the vocabulary. " + DESCRIPTION,
            extra={"vocab_file": "{data_name}_vocab.json"},
            **common,
        )
    )


# -- training recipe (fico train scan): fico_scan.train, imported only when training -------------------
# train.py's argparse defaults with the README's flags (--max_violation --bi_gru); Flickr30K values.
# MS-COCO per the README: --epochs 20 --set lr_update=10 --set learning_rate=0.0005.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 30,  # --num_epochs
    "batch_size": 128,
    "learning_rate": 0.0002,
    "lr_update": 15,  # learning rate x 0.1 every lr_update epochs
    "grad_clip": 2.0,
    "margin": 0.2,
    "max_violation": True,
    "warmup_epochs": 0,  # not in the original: epochs of summed violations before max_violation (0 = as published)
    "vocab_threshold": 4,  # vocab.py: words seen at least this often in the training captions
    "data_name": None,  # opt.data_name and the vocabulary's file name; None: from the corpus (f30k_precomp, ...)
    "val_batch_size": 128,
}
TRAIN_RECIPE = (
    "kuanghuei/SCAN@8063557: train.py (argparse defaults, adjust_learning_rate, save_checkpoint), model.py "
    "(ContrastiveLoss with max_violation, Adam on txt_enc + img_enc.fc, clip_grad_norm 2), vocab.py (build_vocab, "
    "threshold 4), README training flags"
)


fico_trainers = trainer_hook(
    TrainerSpec(
        model="scan",
        factory="fico_scan.train:train",
        description=(
            "SCAN: hardest-negative triplet ranking loss (margin 0.2) on the cross-attention scores of each batch, "
            "Adam 2e-4 x0.1 every lr_update epochs, gradient norm clipped at 2; vocabulary built from the training "
            "captions; model selection on the validation split (rsum)."
        ),
        defaults=TRAIN_DEFAULTS,
        paper_recipe=TRAIN_RECIPE,
    )
)
