"""The UCCH encoder the registry loads: `build(...)` -> UcchEncoder (binary codes, Hamming).

Inputs are features, one row per item: (n, 4096) VGG-19 fc7 for images, (n, 300) Doc2Vec for
captions. Each goes through its MLP, tanh, L2 normalisation (`*_activations`), then sign.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fico_features.hash_codes import HashEncoder, check_hash_config, checkpoint_architecture, feature_batch

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.checkpoints import strict_load_state_dict

from .checkpoint import Architecture, UcchCheckpoint, read_checkpoint
from .nets import HashMLP

log = logging.getLogger(__name__)
CONFIG_KEYS = (
    "image_dim",
    "text_dim",
    "bits",
    "image_hidden",
    "text_hidden",
    "norm",
    "code_format",
    "precision",
    "seed",
)


@dataclass(frozen=True)
class UcchConfig:
    architecture: Architecture
    norm: bool = True
    code_format: str = "pm1"
    precision: str = "fp32"
    seed: int = 0

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> UcchConfig:
        required = ("image_dim", "text_dim", "bits", "image_hidden", "text_hidden")
        check_hash_config(config, model="UCCH", known=CONFIG_KEYS, required=required)
        for key in ("image_hidden", "text_hidden"):
            if not isinstance(config[key], (list, tuple)):
                raise ConfigError(f"UCCH config {key} must be a list of hidden widths, got {config[key]!r}")
        architecture = Architecture(
            int(config["image_dim"]),
            tuple(int(h) for h in config["image_hidden"]),
            int(config["text_dim"]),
            tuple(int(h) for h in config["text_hidden"]),
            int(config["bits"]),
        )
        return cls(
            architecture,
            bool(config.get("norm", True)),
            config.get("code_format", "pm1"),
            config.get("precision", "fp32"),
            int(config.get("seed", 0)),
        )


def build_nets(architecture: Architecture, *, norm: bool = True, seed: int | None = None) -> tuple[HashMLP, HashMLP]:
    """The image and text networks; seeded random init (PyTorch's default, as the original) if seed is given."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        image_net = HashMLP(architecture.image_dim, architecture.image_hidden, architecture.bits, norm=norm)
        text_net = HashMLP(architecture.text_dim, architecture.text_hidden, architecture.bits, norm=norm)
    return image_net, text_net


class UcchEncoder(HashEncoder):
    """Features -> {-1,+1} int8 codes (or packed uint8 bits) of `bits` bits, compared by Hamming distance."""

    def __init__(
        self,
        image_net: HashMLP,
        text_net: HashMLP,
        config: UcchConfig,
        device: str,
        checkpoint: UcchCheckpoint | None = None,
    ) -> None:
        self.image_net, self.text_net = image_net, text_net
        self.config = config
        self.checkpoint_info = dict(checkpoint.info) if checkpoint is not None else {}
        super().__init__([image_net, text_net], config, device, checkpoint)
        self.bits, self.image_dim, self.text_dim = image_net.bits, image_net.in_dim, text_net.in_dim

    @torch.inference_mode()
    def image_activations(self, batch: Any) -> torch.Tensor:
        """tanh -> L2 outputs before the sign (what UCCH.py's eval() signs)."""
        return self.image_net(feature_batch(batch, self.image_dim, "image", device=self.device, dtype=self.dtype))

    @torch.inference_mode()
    def text_activations(self, batch: Any) -> torch.Tensor:
        return self.text_net(feature_batch(batch, self.text_dim, "text", device=self.device, dtype=self.dtype))


def read_and_check(checkpoint: Any) -> UcchCheckpoint | None:
    if checkpoint is None:
        return None
    if isinstance(checkpoint, str) and not Path(checkpoint).exists():
        raise CheckpointError(
            f"UCCH has no published weights to fetch ({checkpoint!r}): pass the path of a *_best_checkpoint.t7 "
            "written by UCCH.py in feature mode or by `fico train ucch`"
        )
    return read_checkpoint(Path(checkpoint))


def build(*, spec: Any = None, config: Mapping[str, Any], checkpoint: Any = None, device: str = "cpu") -> UcchEncoder:
    cfg = UcchConfig.from_dict(config)
    ckpt = read_and_check(checkpoint)
    architecture = checkpoint_architecture(cfg.architecture, ckpt, log)  # the .t7 stores no hyper-parameters
    image_net, text_net = build_nets(architecture, norm=cfg.norm, seed=None if ckpt is not None else cfg.seed)
    if ckpt is not None:
        strict_load_state_dict(image_net, ckpt.image_state, what=f"{ckpt.path} image_model_state_dict")
        strict_load_state_dict(text_net, ckpt.text_state, what=f"{ckpt.path} text_model_state_dict")
    return UcchEncoder(image_net, text_net, cfg, device, ckpt)
