"""The plugin config -> transformers' Blip2Config, and a randomly initialised retrieval model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fico_registry.errors import ConfigError
from fico_registry.plugin_api.compat import ensure_torchvision

KNOWN_KEYS = frozenset(
    {
        "image_size",
        "patch_size",
        "vision_hidden_size",
        "vision_layers",
        "vision_heads",
        "vision_intermediate_size",
        "vision_layer_norm_eps",
        "vision_initializer_range",
        "qformer_hidden_size",
        "qformer_layers",
        "qformer_heads",
        "qformer_intermediate_size",
        "cross_attention_frequency",
        "vocab_size",
        "max_position_embeddings",
        "num_query_tokens",
        "embed_dim",
        "max_text_tokens",
        "max_words",
        "image_mean",
        "image_std",
        "vocab_file",
        "builtin_vocab",
        "precision",
        "seed",
    }
)
PRECISIONS = ("fp32", "fp16", "bf16")


def check_config(config: Mapping[str, Any]) -> None:
    """Unknown keys are typos: refuse them rather than silently ignore them."""
    unknown = sorted(set(config) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"blip2: unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_KEYS))}")
    missing = sorted(KNOWN_KEYS - set(config) - {"vocab_file", "builtin_vocab", "precision", "seed"})
    if missing:
        raise ConfigError(f"blip2: config lacks {', '.join(missing)} (start from the card's 'default' config)")
    if config.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"blip2: precision must be one of {', '.join(PRECISIONS)}, got {config.get('precision')!r}")
    if config["image_size"] % config["patch_size"]:
        raise ConfigError("blip2: image_size must be a multiple of patch_size")


def import_transformers() -> Any:
    """transformers, imported after the torchvision fix (its BLIP-2 module pulls in image code)."""
    ensure_torchvision()
    import transformers

    return transformers


def blip2_config(config: Mapping[str, Any]) -> Any:
    """transformers Blip2Config for the retrieval model (Q-Former with its text feed-forward)."""
    transformers = import_transformers()
    vision = transformers.Blip2VisionConfig(
        image_size=config["image_size"],
        patch_size=config["patch_size"],
        hidden_size=config["vision_hidden_size"],
        num_hidden_layers=config["vision_layers"],
        num_attention_heads=config["vision_heads"],
        intermediate_size=config["vision_intermediate_size"],
        layer_norm_eps=config["vision_layer_norm_eps"],
        initializer_range=config["vision_initializer_range"],
        qkv_bias=True,
    )
    qformer = transformers.Blip2QFormerConfig(
        vocab_size=config["vocab_size"],
        hidden_size=config["qformer_hidden_size"],
        num_hidden_layers=config["qformer_layers"],
        num_attention_heads=config["qformer_heads"],
        intermediate_size=config["qformer_intermediate_size"],
        cross_attention_frequency=config["cross_attention_frequency"],
        max_position_embeddings=config["max_position_embeddings"],
        encoder_hidden_size=config["vision_hidden_size"],
        use_qformer_text_input=True,
    )
    return transformers.Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        num_query_tokens=config["num_query_tokens"],
        image_text_hidden_size=config["embed_dim"],
    )


def random_model(config: Mapping[str, Any]) -> Any:
    """A Blip2ForImageTextRetrieval with reproducible random weights (seeded, RNG state restored)."""
    import torch

    Blip2ForImageTextRetrieval = import_transformers().Blip2ForImageTextRetrieval

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.get("seed", 0)))
        model = Blip2ForImageTextRetrieval(blip2_config(config))
        # transformers zero-initialises the queries, which makes all 32 identical; LAVIS draws
        # them from N(0, 0.02) like BERT weights, so random models keep distinct queries.
        with torch.no_grad():
            model.query_tokens.normal_(mean=0.0, std=0.02)
    return model
