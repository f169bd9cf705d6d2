"""Reading ADV's own checkpoints (`checkpoint_{epoch}.pth.tar` / `model_best.pth.tar`).

The training scripts save ``{'epoch', 'model', 'best_rsum', 'opt', 'Eiters'}`` with torch.save,
where `model` is a list ``[img_enc.state_dict(), txt_enc.state_dict()]`` plus, when the model
was trained with concept labels (`--need_concept_label=1`, the training default), a third
``concept_enc`` state dict (Linear(final_dims,1024)-ReLU-Linear(1024,concept_num)-Sigmoid) that
only serves a training loss. `opt` is the argparse.Namespace of the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint

log = logging.getLogger(__name__)
CHECKPOINT_NAMES = ("model_best.pth.tar",)


@dataclass
class AdvCheckpoint:
    path: Path
    image_state: dict[str, Any]
    text_state: dict[str, Any]
    opt: dict[str, Any] = field(default_factory=dict)
    concept_state: dict[str, Any] | None = None

    @property
    def is_screen_model(self) -> bool:
        """The screen model's image branch is a torchvision ResNet-50 under `backbone.`."""
        return any(k.startswith("backbone.") for k in self.image_state)


def find_checkpoint_file(path: Path) -> Path:
    """A file as given; in a folder, model_best.pth.tar or its only *.pth.tar."""
    if path.is_file():
        return path
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        found = sorted(path.glob("*.pth.tar"))
        if len(found) == 1:
            return found[0]
        listing = ", ".join(p.name for p in found) or "none"
        raise CheckpointError(
            f"{path} is a folder without model_best.pth.tar and with {len(found)} *.pth.tar files ({listing}): "
            "pass the checkpoint file itself"
        )
    raise CheckpointError(f"checkpoint {path} does not exist")


def read_checkpoint(path: str | Path) -> AdvCheckpoint:
    file = find_checkpoint_file(Path(path))
    data = load_torch_checkpoint(file)
    if not isinstance(data, Mapping) or "model" not in data:
        keys = list(data)[:8] if isinstance(data, Mapping) else type(data).__name__
        raise CheckpointError(
            f"{file}: not an ADV checkpoint (expected a dict with 'model' = [img_enc, txt_enc(, concept_enc)] "
            f"state dicts, as train_reranking.py saves; found {keys})"
        )
    model = data["model"]
    if (
        not isinstance(model, list | tuple)
        or len(model) not in (2, 3)
        or not all(isinstance(s, Mapping) for s in model)
    ):
        raise CheckpointError(
            f"{file}: 'model' must be a list of 2 or 3 state dicts [img_enc, txt_enc(, concept_enc)], "
            f"got {type(model).__name__} of length {len(model) if hasattr(model, '__len__') else '?'}"
        )
    opt = data.get("opt")
    if opt is None:
        opt_dict: dict[str, Any] = {}
        log.warning("%s has no 'opt': the architecture comes from the config and the tensor shapes alone", file)
    elif isinstance(opt, Mapping):
        opt_dict = dict(opt)
    elif hasattr(opt, "__dict__"):
        opt_dict = dict(vars(opt))
    else:
        raise CheckpointError(f"{file}: 'opt' is a {type(opt).__name__}, expected an argparse.Namespace")
    concept = dict(model[2]) if len(model) == 3 else None
    if concept is not None:
        log.info("%s: ignoring the third state dict (concept_enc, a training-only head: %s)", file, ", ".join(concept))
    return AdvCheckpoint(
        path=file, image_state=dict(model[0]), text_state=dict(model[1]), opt=opt_dict, concept_state=concept
    )


def _shape(state: Mapping[str, Any], key: str, where: str) -> tuple[int, ...]:
    try:
        return tuple(state[key].shape)
    except KeyError:
        raise CheckpointError(f"{where} has no {key!r}: not an ADV re-rank model state dict") from None


def infer_text_architecture(ckpt: AdvCheckpoint) -> dict[str, Any]:
    """Sizes of the caption branch (BERT + TextCNN + mapping) read from the tensors."""
    txt, where = ckpt.text_state, f"{ckpt.path} model[1] (txt_enc)"
    vocab_size, bert_hidden = _shape(txt, "bert.embeddings.word_embeddings.weight", where)
    max_positions, _ = _shape(txt, "bert.embeddings.position_embeddings.weight", where)
    type_vocab, _ = _shape(txt, "bert.embeddings.token_type_embeddings.weight", where)
    bert_ffn, _ = _shape(txt, "bert.encoder.layer.0.intermediate.dense.weight", where)
    layers = 1 + max(int(k.split(".")[3]) for k in txt if k.startswith("bert.encoder.layer."))
    return {
        "final_dims": _shape(txt, "mapping.weight", where)[0],
        "cnn_channels": _shape(txt, "convs1.0.weight", where)[0],
        "bert_config": {
            "vocab_size": vocab_size,
            "hidden_size": bert_hidden,
            "num_hidden_layers": layers,
            "intermediate_size": bert_ffn,
            "max_position_embeddings": max_positions,
            "type_vocab_size": type_vocab,
        },
    }


def infer_architecture(ckpt: AdvCheckpoint) -> dict[str, Any]:
    """Every size of the re-rank model the tensors determine (head counts cannot be read from shapes)."""
    img, where = ckpt.image_state, f"{ckpt.path} model[0] (img_enc)"
    hidden, img_dim = _shape(img, "mapping.weight", where)
    final_dims, _ = _shape(img, "mapping2.weight", where)
    trans_ffn, _ = _shape(img, "layer.intermediate.dense.weight", where)
    facts = infer_text_architecture(ckpt)
    if facts["final_dims"] != final_dims:
        raise CheckpointError(
            f"{ckpt.path}: image codes have {final_dims} dims (mapping2) but text codes {facts['final_dims']} (mapping)"
        )
    return {**facts, "img_dim": img_dim, "trans_cfg": {"hidden_size": hidden, "intermediate_size": trans_ffn}}
