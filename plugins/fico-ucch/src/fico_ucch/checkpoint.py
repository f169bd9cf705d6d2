"""Reading UCCH's own checkpoints: `{arch}_{bit}_best_checkpoint.t7`.

The `.t7` suffix is historical (Lua Torch); UCCH.py writes it with torch.save: a dict
    image_model_state_dict, text_model_state_dict   (fc.{0,2,4}.* and fc.{0,2}.* in feature mode)
    optimizer_state_dict, Avg, Img2Txt, Txt2Img, epoch
where Avg / Img2Txt / Txt2Img are numpy float64 scalars (validation mAP). No hyper-parameters are
stored: bits, hidden widths and input widths are read from the weight shapes.

Loading is weights-only (no arbitrary unpickling); on top of argparse.Namespace only numpy's scalar
reconstruction is allowed, under both its numpy 2 and numpy 1 names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint

REQUIRED = ("image_model_state_dict", "text_model_state_dict")
BEST_PATTERN = "*_best_checkpoint.t7"
_LINEAR = re.compile(r"^fc\.(\d+)\.(weight|bias)$")


def numpy_scalar_globals() -> list[Any]:
    """What unpickling a numpy float scalar needs: numpy's `scalar` and the dtype classes."""
    from numpy._core import multiarray

    allowed: list[Any] = [multiarray.scalar, (multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype]
    for name in ("Float64DType", "Float32DType", "Int64DType"):
        dtype_class = getattr(np.dtypes, name, None)
        if dtype_class is not None:
            allowed.append(dtype_class)
    return allowed


@dataclass(frozen=True)
class Architecture:
    image_dim: int
    image_hidden: tuple[int, ...]
    text_dim: int
    text_hidden: tuple[int, ...]
    bits: int

    def as_config(self) -> dict[str, Any]:
        return {
            "image_dim": self.image_dim,
            "image_hidden": list(self.image_hidden),
            "text_dim": self.text_dim,
            "text_hidden": list(self.text_hidden),
            "bits": self.bits,
        }


@dataclass
class UcchCheckpoint:
    path: Path
    image_state: dict[str, Any]
    text_state: dict[str, Any]
    architecture: Architecture
    info: dict[str, Any] = field(default_factory=dict)  # epoch, Avg, Img2Txt, Txt2Img (plain numbers)


def find_checkpoint_file(path: Path) -> Path:
    """A file as given; in a folder, its only *_best_checkpoint.t7."""
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob(BEST_PATTERN))
        if len(found) == 1:
            return found[0]
        listing = ", ".join(p.name for p in found) or "none"
        raise CheckpointError(
            f"{path} is a folder with {len(found)} files matching {BEST_PATTERN} ({listing}): pass the .t7 file itself"
        )
    raise CheckpointError(f"UCCH checkpoint {path} does not exist")


def mlp_shape(state: Mapping[str, Any], where: str) -> tuple[int, tuple[int, ...], int]:
    """(input width, hidden widths, output width) of an fc.{0,2,4,...} MLP state dict."""
    indices: dict[int, set[str]] = {}
    for key in state:
        match = _LINEAR.match(key)
        if match is None:
            hint = ""
            if key.startswith("module."):
                hint = " (saved from nn.DataParallel: strip the 'module.' prefix first)"
            elif key.startswith(("0.", "1.")):
                hint = (
                    " (a raw-image UCCH model, backbone + hash MLP: this adapter takes feature-mode checkpoints, "
                    "trained with --data_name *_fea on 4096-d VGG-19 fc7 features)"
                )
            raise CheckpointError(
                f"{where}: unexpected key {key!r}; a UCCH feature-mode MLP has only fc.N.weight/bias{hint}"
            )
        indices.setdefault(int(match.group(1)), set()).add(match.group(2))
    if not indices:
        raise CheckpointError(f"{where} is empty: expected fc.0.weight, fc.0.bias, ...")
    order = sorted(indices)
    if order != list(range(0, 2 * len(order), 2)):
        raise CheckpointError(
            f"{where}: Linear layers at fc.{order}; UCCH's are at fc.0, fc.2, fc.4, ... (ReLU between)"
        )
    shapes = []
    for i in order:
        if indices[i] != {"weight", "bias"}:
            raise CheckpointError(f"{where}: fc.{i} has {sorted(indices[i])}, expected weight and bias")
        weight, bias = state[f"fc.{i}.weight"], state[f"fc.{i}.bias"]
        if getattr(weight, "ndim", None) != 2 or getattr(bias, "ndim", None) != 1 or bias.shape[0] != weight.shape[0]:
            raise CheckpointError(
                f"{where}: fc.{i} weight {tuple(weight.shape)} / bias {tuple(bias.shape)} are not a Linear layer"
            )
        shapes.append(tuple(int(s) for s in weight.shape))
    for (out_prev, _), (_, in_next), i in zip(shapes[:-1], shapes[1:], order[1:], strict=True):
        if out_prev != in_next:
            raise CheckpointError(f"{where}: fc.{i} takes {in_next} inputs but the layer before gives {out_prev}")
    return shapes[0][1], tuple(out for out, _ in shapes[:-1]), shapes[-1][0]


def infer_architecture(image_state: Mapping[str, Any], text_state: Mapping[str, Any], where: str) -> Architecture:
    image_dim, image_hidden, image_bits = mlp_shape(image_state, f"{where} image_model_state_dict")
    text_dim, text_hidden, text_bits = mlp_shape(text_state, f"{where} text_model_state_dict")
    if image_bits != text_bits:
        raise CheckpointError(f"{where}: image codes have {image_bits} bits but text codes {text_bits}")
    return Architecture(image_dim, image_hidden, text_dim, text_hidden, image_bits)


def _number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "item") and getattr(value, "numel", lambda: 0)() == 1:
        return value.item()
    return value if isinstance(value, (int, float)) else None


def read_checkpoint(path: str | Path) -> UcchCheckpoint:
    file = find_checkpoint_file(Path(path))
    data = load_torch_checkpoint(file, allow=numpy_scalar_globals())
    if not isinstance(data, Mapping) or any(not isinstance(data.get(k), Mapping) for k in REQUIRED):
        found = list(data)[:10] if isinstance(data, Mapping) else type(data).__name__
        raise CheckpointError(
            f"{file}: not a UCCH checkpoint (expected a dict with {' and '.join(REQUIRED)} as UCCH.py saves; "
            f"found {found})"
        )
    image_state, text_state = dict(data["image_model_state_dict"]), dict(data["text_model_state_dict"])
    architecture = infer_architecture(image_state, text_state, str(file))
    info = {k: _number(data[k]) for k in ("epoch", "Avg", "Img2Txt", "Txt2Img") if k in data}
    return UcchCheckpoint(file, image_state, text_state, architecture, info)
