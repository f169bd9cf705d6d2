"""Registration only: imported at discovery time, so it imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fico_scan.plugin import ARCH as SCAN_ARCH  # light: registration only
from fico_scan.plugin import TINY, merge_configs

from fico_registry import Family, ModelSpec, OutputKind, QueryTimeAttention, hookimpl
from fico_registry.plugin_api import TrainerSpec, trainer_hook

PAPER = (
    "Chen, Ding, Lin, Zhao, Han. IMRAM: Iterative Matching with Recurrent Attention Memory "
    "for Cross-Modal Image-Text Retrieval. CVPR 2020"
)
URL = "https://github.com/HuiChen24/IMRAM"

# opts.py defaults + the arguments of script/tune_f30k.sh (the default) and script/tune_coco.sh:
# SCAN's architecture options (IMRAM's opts.py keeps them, with the same values) plus its own.
_ARCH = {
    **SCAN_ARCH,
    "agg_func": "Mean",  # set by the scripts; IMRAM's scores always average over tokens
    "lambda_lse": 6.0,
    "lambda_softmax": 9.0,
    "model_mode": "image_IMRAM",
    "iteration_step": 1,
    "no_IMRAM_norm": True,
}
_ADAPTER = {
    "vocab_size": 8481,
    "max_words": 80,
    "tokenizer": "treebank",
    "lowercase": "unicode",
    "score_dtype": "float32",
}
COCO = {
    "data_name": "coco_precomp",
    "vocab_size": 11353,
    "model_mode": "text_IMRAM",
    "iteration_step": 3,
    "lambda_softmax": 11.0,
}


def _config(*parts: dict[str, Any]) -> dict[str, Any]:
    return merge_configs(_ARCH, _ADAPTER, *parts)


@hookimpl
def fico_models(register: Callable[[ModelSpec], None]) -> None:
    register(
        ModelSpec(
            name="imram",
            family=Family.FG,
            output=OutputKind.SIMILARITY,
            query_time_attention=QueryTimeAttention.CROSS_ATTENTION,
            dim=1024,
            image_input="regions",
            text_input="text",
            factory="fico_imram.model:build",
            configs={
                "default": _config(),  # tune_f30k.sh: image_IMRAM, 1 step, lambda_softmax 9
                "f30k-text": _config({"model_mode": "text_IMRAM", "iteration_step": 3}),
                "f30k-full": _config({"model_mode": "full_IMRAM", "iteration_step": 3}),
                "coco": _config(COCO),  # tune_coco.sh: text_IMRAM, 3 steps, lambda_softmax 11
                "coco-image": _config(COCO, {"model_mode": "image_IMRAM"}),
                "coco-full": _config(COCO, {"model_mode": "full_IMRAM"}),
                "tiny": _config(TINY),
                "tiny-full": _config(TINY, {"model_mode": "full_IMRAM", "iteration_step": 3, "no_IMRAM_norm": False}),
            },
            paper=PAPER,
            url=URL,
            license="unspecified (the original repository has no LICENSE file)",
            description=(
                "Per-region and per-word features kept for query-time iterative cross attention with a gated "
                "recurrent memory; score() sums iteration_step steps (Text-IMRAM, Image-IMRAM or both, per the "
                "checkpoint's opt.model_mode), vectorised over images and captions. No pretrained weights were "
                "published: load a model_best.pth.tar trained with the original code; the vocabulary is the "
                "original {data_name}_vocab.json beside it or config vocab_path."
            ),
            extra={"vocab_file": "{data_name}_vocab.json"},
        )
    )


# -- training recipe (fico train imram): fico_imram.train, imported only when training -----------------
# opts.py defaults with script/tune_f30k.sh's flags (--max_violation --bi_gru --agg_func=Mean ...).
# MS-COCO per script/tune_coco.sh: --config coco --epochs 20 --set lr_update=10 --set learning_rate=0.0005.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 30,  # --num_epochs
    "batch_size": 128,
    "learning_rate": 0.0002,
    "lr_update": 15,
    "grad_clip": 2.0,
    "margin": 0.2,
    "max_violation": True,
    "warmup_epochs": 0,  # not in the original: epochs of summed violations before max_violation (0 = as published)
    "vocab_threshold": 4,  # SCAN's vocab.py, which built the vocabulary files IMRAM ships
    "data_name": None,  # opt.data_name and the vocabulary's file name; None: from the corpus (f30k_precomp, ...)
    "val_batch_size": 128,
}
TRAIN_RECIPE = (
    "HuiChen24/IMRAM@acada5c: train_gpus.py (Adam on model.parameters(), adjust_learning_rate, clip_grad_norm_, "
    "save_checkpoint), model.py (ContrastiveLoss), opts.py defaults, script/tune_f30k.sh and tune_coco.sh flags"
)


fico_trainers = trainer_hook(
    TrainerSpec(
        model="imram",
        factory="fico_imram.train:train",
        description=(
            "IMRAM: hardest-negative triplet ranking loss (margin 0.2) on the summed iterative-matching scores of "
            "each batch, Adam 2e-4 x0.1 every lr_update epochs, gradient norm clipped at 2; vocabulary built from "
            "the training captions; model selection on the validation split (rsum)."
        ),
        defaults=TRAIN_DEFAULTS,
        paper_recipe=TRAIN_RECIPE,
    )
)
