"""Feature batches in, binary codes out: the two ends every hashing encoder shares."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fico_registry.errors import ConfigError, DTypeError, InputError, ShapeError

CODE_FORMATS = ("pm1", "packed")
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # np.packbits order: the first bit is the most significant


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
