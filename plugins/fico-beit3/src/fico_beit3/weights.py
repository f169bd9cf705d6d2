"""Reading unilm BEiT-3 retrieval checkpoints safely and loading them strictly.

unilm saves `{'model': state_dict, 'optimizer': ..., 'epoch': ..., 'scaler': ..., 'args':
argparse.Namespace}` (utils.save_model), DeepSpeed `{'module': state_dict, ...}`, and its
loader takes 'model', then 'module', then the file itself as the state dict
(load_model_and_may_interpolate with model_key 'model|module'). The file is read by torch's
weights-only unpickler with argparse.Namespace allowed (fico_registry.plugin_api.checkpoints); any
other pickled object makes it fail with the name of what it wanted to import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint, state_dict_mismatches

MODEL_KEYS = ("model", "module")  # unilm's default --model_key 'model|module'


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The retrieval state dict inside a unilm checkpoint file."""
    loaded = load_torch_checkpoint(path)
    if not isinstance(loaded, Mapping):
        raise CheckpointError(
            f"{path}: expected a dict (a state dict, or one under 'model'), got {type(loaded).__name__}"
        )
    state: Any = loaded
    for key in MODEL_KEYS:
        if key in loaded:
            state = loaded[key]
            break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path}: the state dict is empty or not a dict (top-level keys: {sorted(loaded)[:10]})")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path}: no 'model' or 'module' entry holding a state dict; the top level has non-tensor entries "
            f"{not_tensors[:5]} (top-level keys: {sorted(loaded)[:10]})"
        )
    return dict(state)


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, what: str) -> None:
    """Strict load into a model built on the meta device: names and shapes must match exactly,
    then the checkpoint's tensors become the parameters (as float32, as unilm's fp32 model)."""
    parts = state_dict_mismatches(model.state_dict(), state)
    if parts:
        hint = ""
        if "beit3.encoder.embed_positions.A.weight: checkpoint" in " ".join(parts):
            hint = " (a different image_size: the checkpoint's vision positions are for another resolution)"
        raise CheckpointError(f"{what} does not match the architecture: " + " | ".join(parts) + hint)
    bad = [k for k, v in state.items() if not v.is_floating_point()]
    if bad:
        raise CheckpointError(f"{what}: non-float tensors {bad[:5]} where BEiT-3 has float parameters")
    model.load_state_dict({k: v.to(torch.float32).contiguous() for k, v in state.items()}, strict=True, assign=True)
