"""Original VSRN checkpoints: reading them safely, the architecture from `opt`, strict loading.

The original `train.py` saves (torch.save of a dict, Python 2.7 / PyTorch 0.4.1):

    {"epoch": int, "model": [img_enc.state_dict(), txt_enc.state_dict()],
     "best_rsum": float, "opt": argparse.Namespace, "Eiters": int}

`VSRN.state_dict()` returns only those two encoders: the caption-generation branch
(S2VTAttModel = EncoderRNN + DecoderRNN, trained jointly) is NOT saved, and the original
`load_state_dict` reads model[0] and model[1] only. A checkpoint whose list also carries a
state dict of that branch (as a modified training script might save) is accepted: the entry
is recognised by its parameter names and skipped with a log line. Any other extra entry, and
any missing or unexpected key in the two encoders, is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint, saved_options

log = logging.getLogger(__name__)

# The options the original model constructor reads to shape the retrieval encoders.
ARCH_KEYS = ("data_name", "img_dim", "embed_size", "word_dim", "num_layers")
# Read too, with the training script's defaults when an old opt lacks them.
FLAG_DEFAULTS: dict[str, Any] = {"use_abs": False, "no_imgnorm": False, "measure": "cosine"}
# Top-level entries of the saved dict: what train.py writes, plus resume-only state a
# fico training run may add (the original loaders never read it).
KNOWN_TOP_LEVEL = {"epoch", "model", "best_rsum", "opt", "Eiters", "fico_resume"}

# Parameter-name prefixes of the caption branch, as S2VTAttModel (encoder./decoder.), or as the
# separate EncoderRNN (vid2hid, rnn) / DecoderRNN (embedding, attention, rnn, out) modules.
_CAPTION_MODEL_PREFIXES = (
    "encoder.vid2hid.",
    "encoder.rnn.",
    "decoder.embedding.",
    "decoder.attention.",
    "decoder.rnn.",
    "decoder.out.",
)
_CAPTION_ENCODER_PREFIXES = ("vid2hid.", "rnn.")
_CAPTION_DECODER_PREFIXES = ("embedding.", "attention.", "rnn.", "out.")


def read_checkpoint(path: Path) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
    """(opt as a dict, [img_enc state, txt_enc state]) of an original `.pth.tar`."""
    ck = load_torch_checkpoint(path)  # weights-only unpickler + argparse.Namespace, latin-1 retry
    if not isinstance(ck, Mapping) or "model" not in ck or "opt" not in ck:
        found = sorted(map(str, ck))[:8] if isinstance(ck, Mapping) else type(ck).__name__
        raise CheckpointError(
            f"{path}: not an original VSRN checkpoint (expected the dict train.py saves, with 'model' and 'opt'; "
            f"found {found})"
        )
    extra = sorted(str(k) for k in ck if k not in KNOWN_TOP_LEVEL)
    if extra:
        log.info("%s: ignoring top-level entries %s (not read by the original loader)", path, ", ".join(extra))
    opt = saved_options(ck["opt"], where=str(path), saved_by="train.py")
    return opt, retrieval_states(ck["model"], where=str(path))


def retrieval_states(model: Any, *, where: str) -> list[Mapping[str, Any]]:
    """The image and text encoder state dicts of checkpoint['model'], other entries checked and dropped."""
    if isinstance(model, Mapping):
        raise CheckpointError(
            f"{where}: checkpoint['model'] is a single state dict; VSRN saves the list "
            "[img_enc.state_dict(), txt_enc.state_dict()]"
        )
    if not isinstance(model, (list, tuple)) or len(model) < 2 or not all(isinstance(s, Mapping) for s in model):
        raise CheckpointError(
            f"{where}: checkpoint['model'] must be the list [img_enc.state_dict(), txt_enc.state_dict()] that "
            f"VSRN saves; found {type(model).__name__}"
            + (f" of {len(model)}" if isinstance(model, (list, tuple)) else "")
        )
    for index, state in enumerate(model[2:], start=2):
        kind = caption_branch_kind(state)
        if kind is None:
            keys = ", ".join(sorted(map(str, state))[:6])
            raise CheckpointError(
                f"{where}: checkpoint['model'][{index}] is not a part of VSRN this adapter knows (keys: {keys}); "
                "the original saves only [img_enc, txt_enc] and its caption branch (encoder./decoder.) is recognised"
            )
        log.info("%s: model[%d] is the caption-generation %s, not used for retrieval: skipped", where, index, kind)
    return [
        with_batchnorm_counters(model[0], where=f"{where} model[0]"),
        with_batchnorm_counters(model[1], where=f"{where} model[1]"),
    ]


def with_batchnorm_counters(state: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Add the `num_batches_tracked` that BatchNorm state dicts from PyTorch < 0.4.1 lack.

    torch's own BatchNorm loader does the same for such old state dicts; the counter only
    matters in training with momentum=None, never in evaluation.
    """
    import torch

    state = dict(state)
    added = []
    for key in list(state):
        if key.endswith(".running_mean") or key == "running_mean":
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            if counter not in state:
                state[counter] = torch.tensor(0, dtype=torch.long)
                added.append(counter)
    if added:
        log.info("%s: BatchNorm state from PyTorch < 0.4.1; added %s", where, ", ".join(added))
    return state


def caption_branch_kind(state: Mapping[str, Any]) -> str | None:
    """Which part of the caption branch a state dict is, by its parameter names; None if none."""
    keys = [str(k) for k in state]
    if not keys:
        return None
    for kind, prefixes, needed in (
        ("model (S2VTAttModel)", _CAPTION_MODEL_PREFIXES, "decoder.out."),
        ("encoder (EncoderRNN)", _CAPTION_ENCODER_PREFIXES, "vid2hid."),
        ("decoder (DecoderRNN)", _CAPTION_DECODER_PREFIXES, "attention."),
    ):
        if all(k.startswith(prefixes) for k in keys) and any(k.startswith(needed) for k in keys):
            return kind
    return None


def architecture_from_opt(opt: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """The retrieval architecture a checkpoint's `opt` describes."""
    missing = [k for k in ARCH_KEYS if k not in opt]
    if missing:
        raise CheckpointError(
            f"{where}: opt lacks {', '.join(missing)}, which the original model is built from; "
            "this is not a VSRN train.py checkpoint"
        )
    arch = {k: opt[k] for k in ARCH_KEYS}
    absent = [k for k in FLAG_DEFAULTS if k not in opt]
    if absent:
        log.warning("%s: opt lacks %s; using train.py's defaults", where, ", ".join(absent))
    arch.update({k: opt.get(k, default) for k, default in FLAG_DEFAULTS.items()})
    return arch


def check_embedding_rows(rows: int, vocab_size: int, opt_vocab_size: Any, vocab_source: str, *, where: str) -> None:
    """The original sets opt.vocab_size = len(vocab) and sizes `embed` with it."""
    if rows != vocab_size:
        hint = f" (the checkpoint's opt.vocab_size is {opt_vocab_size})" if opt_vocab_size is not None else ""
        raise CheckpointError(
            f"{where}: txt_enc embed.weight has {rows} rows but the vocabulary {vocab_source} has {vocab_size} words"
            f"{hint}: give the vocabulary the model was trained with (config key vocab_path)"
        )
