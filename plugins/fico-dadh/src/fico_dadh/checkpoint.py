"""Reading DADH's checkpoint: `checkpoints/{dataset}_{bit}/GEN_module.pth`, the raw GEN state dict.

main.py saves `generator.state_dict()` with torch.save and nothing else: no hyper-parameters, no
discriminator. Widths, bits and the dropout variant are read from the keys and shapes. The
scalar mean / std that z-score the image features are not in it either: `image_norm.json`
beside the checkpoint (written by `fico train dadh`), the config, or the original data file
(fico_dadh.original_data) give them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint

FILE_NAME = "GEN_module.pth"
NORM_FILE = "image_norm.json"
_KEY = re.compile(r"^(image_module|text_module)\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_HASH_KEY = re.compile(r"^hash_module\.(image|text)\.0\.(weight|bias)$")
LAYOUTS = {(0, 3, 6): False, (0, 4, 8): True}  # Linear indices -> dropout


@dataclass(frozen=True)
class Architecture:
    image_dim: int
    text_dim: int
    bits: int
    image_widths: tuple[int, int, int]
    text_widths: tuple[int, int, int]
    dropout: bool

    def as_config(self) -> dict[str, Any]:
        return {
            "image_dim": self.image_dim,
            "text_dim": self.text_dim,
            "bits": self.bits,
            "image_widths": list(self.image_widths),
            "text_widths": list(self.text_widths),
            "dropout": self.dropout,
        }


@dataclass
class DadhCheckpoint:
    path: Path
    state: dict[str, Any]
    architecture: Architecture
    image_norm: tuple[float, float] | None  # from image_norm.json beside it


def find_checkpoint_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        if (path / FILE_NAME).is_file():
            return path / FILE_NAME
        raise CheckpointError(f"{path} is a folder without {FILE_NAME}: pass the checkpoint file itself")
    raise CheckpointError(f"DADH checkpoint {path} does not exist")


def _branch_widths(state: Mapping[str, Any], name: str, where: str) -> tuple[int, tuple[int, int, int], bool]:
    linear = sorted(
        {
            int(m.group(2))
            for k in state
            if (m := _KEY.match(k))
            and m.group(1) == name
            and m.group(3) == "weight"
            and getattr(state[k], "ndim", 0) == 2
        }
    )
    dropout = LAYOUTS.get(tuple(linear))
    if dropout is None:
        raise CheckpointError(
            f"{where}: {name} has Linear layers at {linear}; DADH's GEN has them at 0, 3, 6 (dropout=False) or 0, 4, 8 "
            "(dropout=True)"
        )
    shapes = [tuple(int(s) for s in state[f"{name}.{i}.weight"].shape) for i in linear]
    for (out_prev, _), (_, in_next), i in zip(shapes[:-1], shapes[1:], linear[1:], strict=True):
        if out_prev != in_next:
            raise CheckpointError(f"{where}: {name}.{i} takes {in_next} inputs but the layer before gives {out_prev}")
    return shapes[0][1], tuple(out for out, _ in shapes), dropout


def infer_architecture(state: Mapping[str, Any], where: str) -> Architecture:
    for key in state:
        if not (_KEY.match(key) or _HASH_KEY.match(key)):
            hint = ""
            if key.startswith("cnn_f."):
                hint = " (a GEN with the CNN-F image network: this adapter takes 4096-d features)"
            elif key.startswith("module."):
                hint = " (saved from nn.DataParallel: strip the 'module.' prefix first)"
            elif key.startswith(("feature_dis.", "hash_dis.")):
                hint = " (this is the discriminator DIS, not the generator)"
            raise CheckpointError(f"{where}: unexpected key {key!r}; not a DADH GEN_module state dict{hint}")
    image_dim, image_widths, image_dropout = _branch_widths(state, "image_module", where)
    text_dim, text_widths, text_dropout = _branch_widths(state, "text_module", where)
    if image_dropout != text_dropout:
        raise CheckpointError(f"{where}: the image and text branches disagree on dropout layers")
    try:
        bits, hash_in = (int(s) for s in state["hash_module.image.0.weight"].shape)
        text_bits, text_hash_in = (int(s) for s in state["hash_module.text.0.weight"].shape)
    except KeyError as exc:
        raise CheckpointError(f"{where}: missing {exc.args[0]!r}; not a DADH GEN_module state dict") from None
    if bits != text_bits:
        raise CheckpointError(f"{where}: image codes have {bits} bits but text codes {text_bits}")
    if hash_in != image_widths[-1] or text_hash_in != text_widths[-1]:
        raise CheckpointError(
            f"{where}: the hash layers take {hash_in} / {text_hash_in} inputs but the branches give "
            f"{image_widths[-1]} / {text_widths[-1]}"
        )
    return Architecture(image_dim, text_dim, bits, image_widths, text_widths, image_dropout)


def read_image_norm(folder: Path) -> tuple[float, float] | None:
    path = folder / NORM_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        mean, std = float(data["mean"]), float(data["std"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f'{path}: expected {{"mean": number, "std": number}} ({exc})') from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise CheckpointError(f"{path}: mean {mean} / std {std} must be finite with std > 0")
    return mean, std


def read_checkpoint(path: str | Path) -> DadhCheckpoint:
    file = find_checkpoint_file(Path(path))
    state = load_torch_checkpoint(file)
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{file}: expected GEN's raw state dict (name -> tensor), got {type(state).__name__}")
    if "state_dict" in state or "model" in state:
        raise CheckpointError(
            f"{file}: a wrapped checkpoint (keys {list(state)[:6]}); DADH's main.py saves the raw GEN state dict"
        )
    state = dict(state)
    return DadhCheckpoint(file, state, infer_architecture(state, str(file)), read_image_norm(file.parent))
