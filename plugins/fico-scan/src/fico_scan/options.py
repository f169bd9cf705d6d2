"""The original `opt` namespace: defaults, reading it from a checkpoint, merging with a config.

The architecture of a trained model is whatever its `opt` says (as the originals rebuild the
model from `checkpoint['opt']`); the fico config only supplies it for random init, plus the
settings the originals never had (vocab_path, max_words, tokenizer, scoring precision).
IMRAM reuses this module with its own defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint, saved_options

log = logging.getLogger(__name__)

# SCAN train.py argument defaults for the options that shape the model or its scores.
SCAN_OPT_DEFAULTS: dict[str, Any] = {
    "data_name": "precomp",
    "img_dim": 2048,
    "embed_size": 1024,
    "word_dim": 300,
    "num_layers": 1,
    "bi_gru": False,
    "precomp_enc_type": "basic",
    "no_imgnorm": False,
    "no_txtnorm": False,
    "raw_feature_norm": "clipped_l2norm",
    "agg_func": "LogSumExp",
    "cross_attn": "t2i",
    "lambda_lse": 6.0,
    "lambda_softmax": 9.0,
}

# Settings of this adapter (not in the original opt), with their defaults.
ADAPTER_DEFAULTS: dict[str, Any] = {
    "vocab_path": None,  # the original vocabulary file; default: beside the checkpoint
    "vocab_words": None,  # an in-memory word list instead of a file (tiny test configs)
    "vocab_size": None,  # embedding rows for random init without any vocabulary
    "max_words": 80,  # text features are padded to this many tokens (<start>/<end> included)
    "tokenizer": "treebank",
    "lowercase": "ascii",
    "score_dtype": "float32",  # "float64" as the originals' evaluation (SCAN) did
    "score_memory_mb": 512,  # bound on the scorer's temporaries per block
    "precision": "fp32",
}

RAW_FEATURE_NORMS = ("clipped_l2norm", "l2norm", "softmax", "clipped", "no_norm")
BROKEN_RAW_FEATURE_NORMS = ("l1norm", "clipped_l1norm")  # the originals call an undefined l1norm_d
AGG_FUNCS = ("LogSumExp", "Mean", "Max", "Sum")


def read_checkpoint(path: Path, *, model_name: str) -> tuple[dict[str, Any], Any]:
    """(opt as a dict, checkpoint['model']) of an original `.pth.tar`."""
    ck = load_torch_checkpoint(path)
    if not isinstance(ck, Mapping) or "model" not in ck:
        keys = sorted(ck)[:8] if isinstance(ck, Mapping) else type(ck).__name__
        raise CheckpointError(
            f"{path}: not an original {model_name} checkpoint (expected a dict with 'model' and 'opt', found {keys})"
        )
    return saved_options(ck.get("opt"), where=str(path)), ck["model"]


def merge_options(
    config: Mapping[str, Any], opt: Mapping[str, Any] | None, defaults: Mapping[str, Any], *, where: str
) -> dict[str, Any]:
    """Architecture options from `opt` (checkpoint) or else `config`; adapter settings from `config`."""
    unknown = sorted(set(config) - set(defaults) - set(ADAPTER_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown config keys {unknown}; known: {', '.join(sorted({*defaults, *ADAPTER_DEFAULTS}))}"
        )
    merged = {**defaults, **ADAPTER_DEFAULTS}
    for key in (*defaults, *ADAPTER_DEFAULTS):
        if key in config:
            merged[key] = config[key]
    if opt is not None:
        missing = [k for k in defaults if k not in opt]
        if missing:
            log.warning("%s: opt lacks %s; using the training script's defaults", where, ", ".join(missing))
        for key in defaults:
            merged[key] = opt.get(key, defaults[key])
        merged["opt_vocab_size"] = opt.get("vocab_size")
    return merged


def check_common(options: Mapping[str, Any], *, model_name: str) -> None:
    """Values the scorer and encoders depend on; everything else is checked where it is used."""
    norm = options["raw_feature_norm"]
    if norm in BROKEN_RAW_FEATURE_NORMS:
        raise ConfigError(
            f"{model_name}: raw_feature_norm={norm!r} calls l1norm_d in the original code, which is undefined "
            "(NameError), so no model can have been trained with it; use one of " + ", ".join(RAW_FEATURE_NORMS)
        )
    if norm not in RAW_FEATURE_NORMS:
        raise ConfigError(f"{model_name}: unknown raw_feature_norm {norm!r}; one of {', '.join(RAW_FEATURE_NORMS)}")
    if options["precomp_enc_type"] not in ("basic", "weight_norm"):
        raise ConfigError(
            f"{model_name}: precomp_enc_type must be 'basic' or 'weight_norm', got {options['precomp_enc_type']!r}"
        )
    if options["score_dtype"] not in ("float32", "float64"):
        raise ConfigError(f"{model_name}: score_dtype must be 'float32' or 'float64', got {options['score_dtype']!r}")
    if options["precision"] != "fp32":
        raise ConfigError(
            f"{model_name}: only precision='fp32' is supported (the scorer's softmax temperatures need it)"
        )
    max_words = options["max_words"]
    if not isinstance(max_words, int) or isinstance(max_words, bool) or max_words < 2:
        raise ConfigError(
            f"{model_name}: max_words must be an integer >= 2 (tokens incl. <start>/<end>), got {max_words!r}"
        )
    if not isinstance(options["score_memory_mb"], (int, float)) or options["score_memory_mb"] <= 0:
        raise ConfigError(f"{model_name}: score_memory_mb must be a positive number")
