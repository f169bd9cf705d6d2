"""The DADH encoder the registry loads: `build(...)` -> DadhEncoder (binary codes, Hamming).

Images: (n, 4096) VGG-19 fc7 features, z-scored with ONE scalar mean and std (those of the training
feature matrix, as datasets/data_handler.py does over its whole matrix), then image_module (BatchNorm
with running statistics: eval mode) and the tanh hash layer. Captions: (n, 300) Doc2Vec vectors, raw.
Codes = sign.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fico_features.hash_codes import HashEncoder, check_hash_config, checkpoint_architecture, feature_batch

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.checkpoints import strict_load_state_dict

from .checkpoint import NORM_FILE, Architecture, DadhCheckpoint, read_checkpoint
from .nets import Generator, hidden_widths

log = logging.getLogger(__name__)
CONFIG_KEYS = (
    "image_dim",
    "text_dim",
    "hidden_dim",
    "bits",
    "dropout",
    "image_mean",
    "image_std",
    "code_format",
    "precision",
    "seed",
    "data_file",
)


@dataclass(frozen=True)
class DadhConfig:
    architecture: Architecture
    image_mean: float | None = None
    image_std: float | None = None
    code_format: str = "pm1"
    precision: str = "fp32"
    seed: int = 0
    data_file: str | None = None  # the original .mat file, for the z-scoring statistics of a checkpoint

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> DadhConfig:
        check_hash_config(
            config, model="DADH", known=CONFIG_KEYS, required=("image_dim", "text_dim", "hidden_dim", "bits")
        )
        mean, std = config.get("image_mean"), config.get("image_std")
        if (mean is None) != (std is None):
            raise ConfigError(
                "give both image_mean and image_std (the training features' scalar mean and std), or neither"
            )
        if std is not None and not (math.isfinite(float(mean)) and math.isfinite(float(std)) and float(std) > 0):
            raise ConfigError(f"image_mean {mean} / image_std {std} must be finite with image_std > 0")
        widths = hidden_widths(int(config["hidden_dim"]))
        architecture = Architecture(
            int(config["image_dim"]),
            int(config["text_dim"]),
            int(config["bits"]),
            widths,
            widths,
            bool(config.get("dropout", False)),
        )
        data_file = config.get("data_file")
        if data_file is not None and not isinstance(data_file, str):
            raise ConfigError(f"data_file must be the path of the original .mat file, got {data_file!r}")
        return cls(
            architecture,
            None if mean is None else float(mean),
            None if std is None else float(std),
            config.get("code_format", "pm1"),
            config.get("precision", "fp32"),
            int(config.get("seed", 0)),
            data_file,
        )


def build_generator(architecture: Architecture, *, seed: int | None = None) -> Generator:
    """GEN with PyTorch's default init (GEN.weight_init is never called in the original); seeded if asked."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return Generator(
            architecture.image_dim,
            architecture.text_dim,
            architecture.bits,
            image_widths=architecture.image_widths,
            text_widths=architecture.text_widths,
            dropout=architecture.dropout,
        )


class DadhEncoder(HashEncoder):
    """Features -> {-1,+1} int8 codes (or packed uint8 bits) of `bits` bits, compared by Hamming distance."""

    def __init__(
        self,
        generator: Generator,
        image_norm: tuple[float, float],
        config: DadhConfig,
        device: str,
        checkpoint: DadhCheckpoint | None = None,
    ) -> None:
        self.generator = generator
        self.image_mean, self.image_std = image_norm
        self.config = config
        super().__init__([generator], config, device, checkpoint)
        self.bits, self.image_dim, self.text_dim = generator.bits, generator.image_dim, generator.text_dim

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std with the scalar statistics of the training image features, in float32."""
        return ((features.float() - self.image_mean) / self.image_std).to(self.dtype)

    @torch.inference_mode()
    def image_activations(self, batch: Any) -> torch.Tensor:
        """tanh outputs before the sign (GEN.generate_img_code on z-scored features)."""
        x = feature_batch(batch, self.image_dim, "image", device=self.device, dtype=torch.float32)
        return self.generator.image_codes(self.standardise(x))

    @torch.inference_mode()
    def text_activations(self, batch: Any) -> torch.Tensor:
        return self.generator.text_codes(
            feature_batch(batch, self.text_dim, "text", device=self.device, dtype=self.dtype)
        )


def image_norm(cfg: DadhConfig, ckpt: DadhCheckpoint | None) -> tuple[float, float]:
    """Config values, else image_norm.json beside the checkpoint, else computed from the original data file.

    Random weights alone may go without: (0, 1). The data file is config data_file or the one
    main.py read for the run folder's dataset (fico_dadh.original_data); the error names it.
    """
    if cfg.image_mean is not None:
        return cfg.image_mean, cfg.image_std
    if ckpt is None:
        return 0.0, 1.0  # random weights: nothing to match; the identity keeps the features as they are
    if ckpt.image_norm is not None and cfg.data_file is None:
        return ckpt.image_norm
    from .original_data import find_data_file, image_statistics

    data_file, matrix = find_data_file(ckpt.path, cfg.data_file)
    if data_file is not None:
        mean, std = image_statistics(data_file, matrix, width=ckpt.architecture.image_dim)
        log.info("%s: image features z-scored with mean %.6g / std %.6g of %s", ckpt.path, mean, std, data_file)
        return mean, std
    raise CheckpointError(
        f"{ckpt.path}: DADH z-scores image features with the scalar mean and std of its whole data file "
        f"(datasets/data_handler.py), and GEN_module.pth does not store them: pass the original .mat file as "
        "config data_file=... (run folders checkpoints/flickr25k_* / nus-wide_* find ./data/FLICKR-25K.mat / "
        f"NUS-WIDE-TC21.mat by themselves), put {NORM_FILE} "
        '({"mean": ..., "std": ...}) beside the checkpoint, or pass config image_mean=... and image_std=...'
    )


def build(*, spec: Any = None, config: Mapping[str, Any], checkpoint: Any = None, device: str = "cpu") -> DadhEncoder:
    cfg = DadhConfig.from_dict(config)
    ckpt: DadhCheckpoint | None = None
    if checkpoint is not None:
        if isinstance(checkpoint, str) and not Path(checkpoint).exists():
            raise CheckpointError(
                f"DADH has no published weights to fetch ({checkpoint!r}): pass the path of a GEN_module.pth written "
                "by "
                "DADH's main.py or by `fico train dadh`"
            )
        ckpt = read_checkpoint(Path(checkpoint))
    architecture = checkpoint_architecture(cfg.architecture, ckpt, log)  # a raw state dict: the shapes decide
    generator = build_generator(architecture, seed=None if ckpt is not None else cfg.seed)
    if ckpt is not None:
        strict_load_state_dict(generator, ckpt.state, what=str(ckpt.path))
    return DadhEncoder(generator, image_norm(cfg, ckpt), cfg, device, ckpt)
