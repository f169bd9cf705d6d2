"""The configuration dict of a card, checked once and turned into typed fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fico_registry.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16")
BUILTIN_SPMS = ("tiny",)
_POSITIVE_INTS = (
    "embed_dim",
    "layers",
    "attention_heads",
    "ffn_dim",
    "image_size",
    "patch_size",
    "in_chans",
    "vocab_size",
    "max_source_positions",
    "max_text_tokens",
)


@dataclass(frozen=True)
class Beit3Config:
    """Architecture (torchscale EncoderConfig names in comments) and input preparation."""

    embed_dim: int  # encoder_embed_dim
    layers: int  # encoder_layers
    attention_heads: int  # encoder_attention_heads
    ffn_dim: int  # encoder_ffn_embed_dim
    image_size: int  # img_size
    patch_size: int
    in_chans: int
    vocab_size: int
    max_source_positions: int  # rows of the text position table
    layernorm_eps: float
    max_text_tokens: int  # unilm num_max_bpe_tokens: <s> + pieces + </s> + padding
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    sentencepiece_model: str | None
    builtin_spm: str | None
    precision: str
    seed: int

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def vision_positions(self) -> int:
        """Rows of the vision position table: CLS + patches, plus fairseq's 2 unused leading rows."""
        return self.num_patches + 1 + 2

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], *, model: str = "beit3") -> Beit3Config:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"{model}: unknown config keys {unknown}; known keys are {sorted(known)}")
        missing = sorted(known - set(config))
        if missing:
            raise ConfigError(f"{model}: config lacks {missing} (start from the card's 'default' config)")
        values = dict(config)
        for key in _POSITIVE_INTS:
            value = values[key]
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{model}: config {key!r} must be a positive integer, got {value!r}")
        if not isinstance(values["seed"], int) or isinstance(values["seed"], bool):
            raise ConfigError(f"{model}: config 'seed' must be an integer, got {values['seed']!r}")
        if not isinstance(values["layernorm_eps"], (int, float)) or values["layernorm_eps"] <= 0:
            raise ConfigError(f"{model}: config 'layernorm_eps' must be a positive number")
        for key in ("image_mean", "image_std"):
            value = values[key]
            if (
                not isinstance(value, (list, tuple))
                or len(value) != 3
                or not all(isinstance(v, (int, float)) for v in value)
            ):
                raise ConfigError(f"{model}: config {key!r} must be three numbers (R, G, B), got {value!r}")
            values[key] = tuple(float(v) for v in value)
        if any(v <= 0 for v in values["image_std"]):
            raise ConfigError(f"{model}: config 'image_std' must be positive")
        if values["embed_dim"] % values["attention_heads"]:
            raise ConfigError(
                f"{model}: embed_dim {values['embed_dim']} is not divisible by attention_heads "
                f"{values['attention_heads']}"
            )
        if values["image_size"] % values["patch_size"]:
            raise ConfigError(
                f"{model}: image_size {values['image_size']} is not a multiple of patch_size {values['patch_size']}"
            )
        if values["max_text_tokens"] < 3:
            raise ConfigError(f"{model}: max_text_tokens must leave room for <s>, one piece and </s> (>= 3)")
        if values["max_source_positions"] < values["max_text_tokens"] + 2:
            raise ConfigError(
                f"{model}: max_source_positions {values['max_source_positions']} is too small for "
                f"max_text_tokens {values['max_text_tokens']} (text positions start at 2, fairseq style)"
            )
        if values["precision"] not in PRECISIONS:
            raise ConfigError(f"{model}: precision must be one of {', '.join(PRECISIONS)}, got {values['precision']!r}")
        if values["builtin_spm"] not in (None, *BUILTIN_SPMS):
            raise ConfigError(
                f"{model}: builtin_spm must be null or one of {BUILTIN_SPMS}, got {values['builtin_spm']!r}"
            )
        spm = values["sentencepiece_model"]
        if spm is not None and (not isinstance(spm, str) or not spm):
            raise ConfigError(f"{model}: sentencepiece_model must be a path string or null, got {spm!r}")
        values["layernorm_eps"] = float(values["layernorm_eps"])
        return cls(**values)
