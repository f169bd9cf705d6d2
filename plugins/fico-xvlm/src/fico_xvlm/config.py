"""Validation of the plugin config (plain JSON) and the numbers derived from it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fico_registry.errors import ConfigError
from fico_registry.plugin_api.bert import BERT_BASE_UNCASED

REQUIRED = frozenset(
    {
        "image_res",
        "swin_patch_size",
        "swin_embed_dim",
        "swin_depths",
        "swin_num_heads",
        "window_size",
        "mlp_ratio",
        *BERT_BASE_UNCASED,  # the text / fusion BERT's sizes
        "layer_norm_eps",
        "pad_token_id",
        "fusion_layer",
        "embed_dim",
        "temp",
        "max_tokens",
        "max_words",
        "image_mean",
        "image_std",
    }
)
OPTIONAL = frozenset({"rerank_k", "vocab_file", "builtin_vocab", "precision", "seed"})
PRECISIONS = ("fp32", "fp16", "bf16")


def check_config(config: Mapping[str, Any]) -> None:
    """Unknown keys are typos and missing ones are errors: nothing is silently defaulted."""
    unknown = sorted(set(config) - REQUIRED - OPTIONAL)
    if unknown:
        known = ", ".join(sorted(REQUIRED | OPTIONAL))
        raise ConfigError(f"xvlm: unknown config key(s) {', '.join(unknown)}; known: {known}")
    missing = sorted(REQUIRED - set(config))
    if missing:
        raise ConfigError(f"xvlm: config lacks {', '.join(missing)} (start from the card's 'default' config)")
    if config.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"xvlm: precision must be one of {', '.join(PRECISIONS)}, got {config.get('precision')!r}")
    depths, heads = list(config["swin_depths"]), list(config["swin_num_heads"])
    if not depths or len(depths) != len(heads):
        raise ConfigError("xvlm: swin_depths and swin_num_heads must be non-empty lists of the same length")
    grid = config["image_res"] // config["swin_patch_size"]
    if config["image_res"] % config["swin_patch_size"] or grid % 2 ** (len(depths) - 1):
        raise ConfigError(
            f"xvlm: image_res {config['image_res']} must be divisible by swin_patch_size * 2^(stages - 1) "
            f"= {config['swin_patch_size'] * 2 ** (len(depths) - 1)}"
        )
    for stage, n_heads in enumerate(heads):
        if (config["swin_embed_dim"] * 2**stage) % n_heads:
            raise ConfigError(f"xvlm: Swin stage {stage} width is not divisible by its {n_heads} heads")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ConfigError("xvlm: hidden_size must be divisible by num_attention_heads")
    if not 0 <= config["fusion_layer"] <= config["num_hidden_layers"]:
        raise ConfigError("xvlm: fusion_layer must lie between 0 and num_hidden_layers")
    if config["max_tokens"] > config["max_position_embeddings"]:
        raise ConfigError("xvlm: max_tokens exceeds max_position_embeddings")


def vision_width(config: Mapping[str, Any]) -> int:
    """Width of the last Swin stage (1024 for Swin-B): the image token width."""
    return int(config["swin_embed_dim"] * 2 ** (len(config["swin_depths"]) - 1))


def image_tokens(config: Mapping[str, Any]) -> int:
    """1 (average-pooled CLS) + the last stage's grid (1 + 12*12 = 145 at 384 px)."""
    side = config["image_res"] // config["swin_patch_size"] // 2 ** (len(config["swin_depths"]) - 1)
    return 1 + side * side
