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
from fico_features.hash_codes import CODE_FORMATS, feature_batch, to_codes
from fico_features.run_inputs import recorded_pipelines

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.checkpoints import strict_load_state_dict

from .checkpoint import Architecture, UcchCheckpoint, read_checkpoint
from .nets import HashMLP

log = logging.getLogger(__name__)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
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
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"unknown UCCH config keys {unknown}; known: {', '.join(CONFIG_KEYS)}")
        missing = [k for k in ("image_dim", "text_dim", "bits", "image_hidden", "text_hidden") if k not in config]
        if missing:
            raise ConfigError(f"UCCH config lacks {', '.join(missing)}")
        for key in ("image_hidden", "text_hidden"):
            if not isinstance(config[key], (list, tuple)):
                raise ConfigError(f"UCCH config {key} must be a list of hidden widths, got {config[key]!r}")
        if config.get("code_format", "pm1") not in CODE_FORMATS:
            raise ConfigError(
                f"code_format must be one of {', '.join(CODE_FORMATS)}, got {config.get('code_format')!r}"
            )
        if config.get("precision", "fp32") not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {config.get('precision')!r}")
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


class UcchEncoder:
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
        self.device = torch.device(device)
        self.dtype = PRECISIONS[config.precision]
        self.bits = image_net.bits
        self.image_dim, self.text_dim = image_net.in_dim, text_net.in_dim
        self.code_format = config.code_format
        self.checkpoint_info = dict(checkpoint.info) if checkpoint is not None else {}
        # The feature pipelines the checkpoint was trained with (inputs.json beside it), if recorded.
        self.input_pipelines = recorded_pipelines(checkpoint.path.parent) if checkpoint is not None else None
        for net in (image_net, text_net):
            net.requires_grad_(False)
            net.to(device=self.device, dtype=self.dtype).eval()

    @torch.inference_mode()
    def image_activations(self, batch: Any) -> torch.Tensor:
        """tanh -> L2 outputs before the sign (what UCCH.py's eval() signs)."""
        return self.image_net(feature_batch(batch, self.image_dim, "image", device=self.device, dtype=self.dtype))

    @torch.inference_mode()
    def text_activations(self, batch: Any) -> torch.Tensor:
        return self.text_net(feature_batch(batch, self.text_dim, "text", device=self.device, dtype=self.dtype))

    def encode_images(self, batch: Any) -> torch.Tensor:
        return to_codes(self.image_activations(batch), self.code_format)

    def encode_texts(self, batch: Any) -> torch.Tensor:
        return to_codes(self.text_activations(batch), self.code_format)


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
    architecture = cfg.architecture
    if ckpt is not None:
        architecture = ckpt.architecture  # the .t7 stores no hyper-parameters: the shapes decide
        if architecture != cfg.architecture:
            log.warning(
                "%s: architecture from the weight shapes %s differs from the config's %s; using the checkpoint's",
                ckpt.path,
                architecture.as_config(),
                cfg.architecture.as_config(),
            )
    image_net, text_net = build_nets(architecture, norm=cfg.norm, seed=None if ckpt is not None else cfg.seed)
    if ckpt is not None:
        strict_load_state_dict(image_net, ckpt.image_state, what=f"{ckpt.path} image_model_state_dict")
        strict_load_state_dict(text_net, ckpt.text_state, what=f"{ckpt.path} text_model_state_dict")
    return UcchEncoder(image_net, text_net, cfg, device, ckpt)
