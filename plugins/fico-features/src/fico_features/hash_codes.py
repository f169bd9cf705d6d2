"""Feature batches in, binary codes out: the two ends every hashing encoder shares (`HashEncoder`),
and the config checks before them (keys, code format, precision)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from fico_registry.errors import ConfigError, DTypeError, InputError, ShapeError

from .run_inputs import recorded_pipelines

CODE_FORMATS = ("pm1", "packed")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # np.packbits order: the first bit is the most significant


def check_hash_config(config: Mapping[str, Any], *, model: str, known: Sequence[str], required: Sequence[str]) -> None:
    """Raise ConfigError unless `config` has only `known` keys, every `required` one, and a code_format
    and precision from CODE_FORMATS and PRECISIONS (defaults "pm1" and "fp32"); `model` names it in messages."""
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ConfigError(f"unknown {model} config keys {unknown}; known: {', '.join(known)}")
    missing = [k for k in required if k not in config]
    if missing:
        raise ConfigError(f"{model} config lacks {', '.join(missing)}")
    if config.get("code_format", "pm1") not in CODE_FORMATS:
        raise ConfigError(f"code_format must be one of {', '.join(CODE_FORMATS)}, got {config.get('code_format')!r}")
    if config.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {config.get('precision')!r}")


class Architecture(Protocol):
    """A hashing plugin's network shapes (a frozen dataclass), as a config dict for messages."""

    def as_config(self) -> dict[str, Any]: ...


ArchitectureT = TypeVar("ArchitectureT", bound=Architecture)


def checkpoint_architecture(configured: ArchitectureT, checkpoint: Any, log: logging.Logger) -> ArchitectureT:
    """The shapes to build: without a checkpoint the config's; with one, those read from its weights (the
    original files store no hyper-parameters), warned about on the plugin's `log` where they differ."""
    if checkpoint is None:
        return configured
    found: ArchitectureT = checkpoint.architecture
    if found != configured:
        log.warning(
            "%s: architecture from the weight shapes %s differs from the config's %s; using the checkpoint's",
            checkpoint.path,
            found.as_config(),
            configured.as_config(),
        )
    return found


def feature_batch(batch: Any, dim: int, what: str, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A (n, dim) float array or tensor, checked, on `device` in `dtype`."""
    if isinstance(batch, np.ndarray):
        if not np.issubdtype(batch.dtype, np.floating):
            raise DTypeError(f"{what} features must be floating point, got {batch.dtype}")
        batch = torch.from_numpy(np.ascontiguousarray(batch))
    if not isinstance(batch, torch.Tensor):
        raise InputError(f"{what} features must be an array or tensor of shape (n, {dim}), got {type(batch).__name__}")
    if not batch.is_floating_point():
        raise DTypeError(f"{what} features must be floating point, got {batch.dtype}")
    if batch.ndim != 2 or batch.shape[1] != dim:
        raise ShapeError(f"{what} features must have shape (n, {dim}), got {tuple(batch.shape)}")
    return batch.to(device=device, dtype=dtype)


def to_codes(activations: torch.Tensor, code_format: str = "pm1") -> torch.Tensor:
    """Sign of the activations: (n, bits) int8 in {-1,+1}, or (n, bits/8) uint8 packed bits.

    An exact 0 (the original's torch.sign would keep 0, a third value) becomes +1.
    """
    on = activations >= 0
    if code_format == "pm1":
        return torch.where(on, 1, -1).to(torch.int8)
    if code_format == "packed":
        n, bits = on.shape
        if bits % 8:
            raise ConfigError(f"packed codes need a multiple of 8 bits, got {bits}: use code_format 'pm1'")
        weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.int32, device=on.device)
        return (on.view(n, bits // 8, 8).to(torch.int32) * weights).sum(-1).to(torch.uint8)
    raise ConfigError(f"code_format must be one of {', '.join(CODE_FORMATS)}, got {code_format!r}")


class HashConfig(Protocol):
    """What HashEncoder reads of a hashing plugin's config dataclass (checked by check_hash_config)."""

    @property
    def code_format(self) -> str: ...

    @property
    def precision(self) -> str: ...


class HashCheckpoint(Protocol):
    """What HashEncoder reads of a hashing plugin's checkpoint: the weights file it was read from."""

    @property
    def path(self) -> Path: ...


class HashEncoder:
    """Frozen networks on a device in the config's precision: features -> activations (the subclass's
    `image_activations` / `text_activations`) -> {-1,+1} int8 codes or packed bits, compared by Hamming.
    The subclass sets `bits`, `image_dim` and `text_dim` from its networks."""

    def __init__(
        self, nets: Sequence[torch.nn.Module], config: HashConfig, device: str, checkpoint: HashCheckpoint | None
    ) -> None:
        self.device = torch.device(device)
        self.dtype = PRECISIONS[config.precision]
        self.code_format = config.code_format
        # The feature pipelines the checkpoint was trained with (inputs.json beside it), if recorded.
        self.input_pipelines = recorded_pipelines(checkpoint.path.parent) if checkpoint is not None else None
        for net in nets:
            net.requires_grad_(False)
            net.to(device=self.device, dtype=self.dtype).eval()

    def image_activations(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def text_activations(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def encode_images(self, batch: Any) -> torch.Tensor:
        return to_codes(self.image_activations(batch), self.code_format)

    def encode_texts(self, batch: Any) -> torch.Tensor:
        return to_codes(self.text_activations(batch), self.code_format)
