"""scan-ensemble: the average of two SCAN models' similarity matrices (SCAN paper, e.g. t-i AVG + i-t LSE).

Checkpoints: a folder holding exactly the two member `.pth.tar` files (taken in name order)
and their vocabulary (`{data_name}_vocab.json`, in the folder or its `vocab/`), or config
vocab_path; or, without a checkpoint argument, config `member_checkpoints: [path 0, path 1]`
(each member's vocabulary beside its file). Config: {"members": [config of member 0, config of
member 1], ...settings shared by both (max_words, score_dtype, ...)}. Each member's own `opt`
decides its architecture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.run_folders import checkpoints_in_folder

from .model import ScanScorer, build_scorer


def member_configs(config: Mapping[str, Any], *, model_name: str) -> list[dict[str, Any]]:
    members = config.get("members")
    if not isinstance(members, (list, tuple)) or len(members) != 2 or not all(isinstance(m, Mapping) for m in members):
        raise ConfigError(f"{model_name}: config 'members' must be a list of two member configs")
    shared = {k: v for k, v in config.items() if k not in ("members", "member_checkpoints")}
    return [{**shared, **member} for member in members]


class EnsembleEncoder:
    """Features of both members side by side; score = mean of the two members' scores."""

    def __init__(self, members: Sequence[ScanScorer]) -> None:
        self.members = list(members)
        self.dim = self.members[0].dim

    def encode_images(self, batch: Any) -> dict[str, torch.Tensor]:
        return {f"m{k}_regions": m.encode_regions(batch) for k, m in enumerate(self.members)}

    def encode_texts(self, batch: Sequence[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for k, member in enumerate(self.members):
            out[f"m{k}_words"], out[f"m{k}_lengths"] = member.encode_words(batch)
        return out

    def score(self, images: Mapping[str, torch.Tensor], texts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        scores = [
            m.score_features(images[f"m{k}_regions"], texts[f"m{k}_words"], texts[f"m{k}_lengths"])
            for k, m in enumerate(self.members)
        ]
        return (scores[0] + scores[1]) / 2


def build(*, spec: Any, config: Mapping[str, Any], checkpoint: Path | str | None, device: str) -> EnsembleEncoder:
    if isinstance(checkpoint, str):
        raise CheckpointError(
            f"{spec.name}: give a local folder with the two member .pth.tar files, not {checkpoint!r}"
        )
    configs = member_configs(config, model_name=spec.name)
    listed = config.get("member_checkpoints")
    if checkpoint is not None:
        if listed:
            raise ConfigError(f"{spec.name}: give either a checkpoint folder or config member_checkpoints, not both")
        members = checkpoints_in_folder(checkpoint, 2, model=spec.name, what="checkpoint files (the ensemble members)")
        paths: list[Path | None] = list(members)
    elif listed:
        if not isinstance(listed, (list, tuple)) or len(listed) != 2:
            raise ConfigError(f"{spec.name}: member_checkpoints must be a list of two .pth.tar paths")
        paths = [Path(p).expanduser() for p in listed]
        for path in paths:
            if not path.is_file():
                raise CheckpointError(f"{spec.name}: member checkpoint {path} is not a file")
    else:
        paths = [None, None]
    return EnsembleEncoder(
        [build_scorer(c, p, device, model_name=spec.name) for c, p in zip(configs, paths, strict=True)]
    )
