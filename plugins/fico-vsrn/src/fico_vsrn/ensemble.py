"""vsrn-ensemble: the official two-checkpoint evaluation of VSRN as one CONTINUOUS model.

The original `evaluation_models.py` scores image i against caption j as the average of the
two models' inner products, (a_i . b_j + a'_i . b'_j) / 2. With the embedding

    e(x) = [m1(x), m2(x)] / sqrt(2)          (each member's own, normalised, embedding)

the inner product of an image and a caption embedding is exactly that average, so the
ensemble needs no special scorer: it is a (d1 + d2)-wide embedding model compared by inner
product. As in the original, both members tokenise with the first member's vocabulary.

Checkpoint: a folder with exactly the two member `.pth.tar` files (taken in name order, e.g.
model_fliker_1 / model_fliker_2) and the vocabulary (in the folder or its `vocab/`), or the
config key member_checkpoints = [path 1, path 2].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.run_folders import checkpoints_in_folder

from .captions import resolve_vocabulary
from .checkpoint import architecture_from_opt, read_checkpoint
from .model import VsrnNetwork, build_network, settings_from

MEMBER_SCALE = 1.0 / math.sqrt(2.0)


def member_checkpoints(checkpoint: Path | None, config: Mapping[str, Any], *, model_name: str) -> list[Path] | None:
    """The two member files: config member_checkpoints, or the two checkpoint files in a folder."""
    listed = config.get("member_checkpoints")
    if listed is not None:
        if checkpoint is not None:
            raise ConfigError(f"{model_name}: give either checkpoint=FOLDER or config member_checkpoints, not both")
        if not isinstance(listed, (list, tuple)) or len(listed) != 2 or not all(isinstance(p, str) for p in listed):
            raise ConfigError(f"{model_name}: member_checkpoints must be a list of two .pth.tar paths")
        paths = [Path(p).expanduser() for p in listed]
        for path in paths:
            if not path.is_file():
                raise CheckpointError(f"{model_name}: member checkpoint {path} does not exist")
        return paths
    if checkpoint is None:
        return None
    return checkpoints_in_folder(
        checkpoint, 2, model=model_name, what="checkpoint files (the members)",
        alternative=" (or set config member_checkpoints)",
    )  # fmt: skip


class VsrnEnsembleEncoder:
    """Embeddings [m1, m2] / sqrt(2): their inner product is the mean of the members' similarities."""

    def __init__(self, members: Sequence[VsrnNetwork]) -> None:
        if len(members) != 2:
            raise ConfigError("vsrn-ensemble averages exactly two models")
        self.members = list(members)
        self.dim = sum(m.dim for m in self.members)

    def encode_images(self, batch: Any) -> torch.Tensor:
        return torch.cat([m.embed_images(batch) * MEMBER_SCALE for m in self.members], dim=1)

    def encode_texts(self, batch: Sequence[str]) -> torch.Tensor:
        return torch.cat([m.embed_texts(batch) * MEMBER_SCALE for m in self.members], dim=1)


def build(*, spec: Any, config: Mapping[str, Any], checkpoint: Path | str | None, device: str) -> VsrnEnsembleEncoder:
    if isinstance(checkpoint, str):
        raise CheckpointError(
            f"{spec.name}: give a local folder with the two member .pth.tar files, not {checkpoint!r}"
        )
    settings = settings_from(config, model_name=spec.name, extra_keys=("member_checkpoints",))
    paths = member_checkpoints(checkpoint, settings, model_name=spec.name)
    member_settings = {k: v for k, v in settings.items() if k != "member_checkpoints"}
    if paths is None:  # random init: two differently seeded members
        seeds = (int(settings["seed"]), int(settings["seed"]) + 1)
        return VsrnEnsembleEncoder(
            [build_network({**member_settings, "seed": s}, None, device, model_name=spec.name) for s in seeds]
        )
    # The original evaluation loads opt.data_name's vocabulary of the first model for both.
    first = read_checkpoint(paths[0])
    data_name = architecture_from_opt(first[0], where=str(paths[0]))["data_name"]
    vocab = resolve_vocabulary(
        member_settings,
        data_name,
        checkpoint if checkpoint is not None else paths[0],
        model_name=spec.name,
        opt=first[0],
        opt_checkpoint=paths[0],
    )
    return VsrnEnsembleEncoder(
        [
            build_network(
                member_settings, path, device, model_name=spec.name, vocab=vocab, vocab_resolved=True, loaded=loaded
            )
            for path, loaded in ((paths[0], first), (paths[1], None))
        ]
    )
