"""The side files an original ADV run names in its `opt`: BERT's JSON config and vocab.txt, t_cfg.json.

train_reranking.py / train_screen.py set, relative to the folder they ran in,
`opt.vocab_file = {bert_path}/vocab.txt`, `opt.bert_config_file = {bert_path}/bert_config.json`
and `opt.trans_cfg = 't_cfg.json'`, build the text BERT from bert_config.json and the image
transformer layer from t_cfg.json, and save the checkpoints in `{opt.exp_dir}/checkpoints/`
(exp_dir = runs/{data_name}/{time}_{host}_{remark}). The JSON files fix what tensor shapes
cannot (head counts), so when they are found they are the architecture; when they are not, the
config's published values stand (BERT-base: 12 heads; t_cfg.json: 16) and a checkpoint whose
shapes disagree with the config is refused naming the JSON file to supply.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.run_folders import find_original_file, missing_original_file

from .checkpoint import AdvCheckpoint
from .config import _BERT_KEYS, _TRANS_KEYS, AdvConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OriginalFile:
    file_name: str  # e.g. bert_config.json
    option: str  # where the run's opt names it, e.g. opt.bert_config_file
    stored: str | None  # the path stored there


def _opt_str(opt: Mapping[str, Any], key: str) -> str | None:
    value = opt.get(key)
    return value if isinstance(value, str) and value else None


def saved_dir(opt: Mapping[str, Any]) -> str | None:
    """Where the training script saved this checkpoint, relative to the folder it ran in."""
    exp_dir = _opt_str(opt, "exp_dir")
    return os.path.join(exp_dir, "checkpoints") if exp_dir else None


def bert_file(opt: Mapping[str, Any], key: str, file_name: str) -> OriginalFile:
    """opt.vocab_file / opt.bert_config_file, or the file in opt.bert_path when an old opt lacks the key."""
    stored = _opt_str(opt, key)
    if stored is None and _opt_str(opt, "bert_path"):
        stored = os.path.join(opt["bert_path"], file_name)
    return OriginalFile(file_name, f"opt.{key}", stored)


def locate(ckpt: AdvCheckpoint, wanted: OriginalFile) -> Path | None:
    """Beside the checkpoint, else where the opt says (relative to the folders above it)."""
    return find_original_file(wanted.stored, ckpt.path, saved_dir=saved_dir(ckpt.opt), beside=(wanted.file_name,))


def missing(ckpt: AdvCheckpoint, wanted: OriginalFile, *, config_key: str, why: str) -> CheckpointError:
    return missing_original_file(
        "ADV", wanted.file_name, checkpoint=ckpt.path, option=wanted.option if wanted.stored else None,
        stored=wanted.stored, config_key=config_key, why=why,
    )  # fmt: skip


def _section(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON config ({exc})") from None
    absent = [k for k in keys if not isinstance(data, Mapping) or k not in data]
    if absent:
        raise CheckpointError(f"{path}: lacks {', '.join(absent)} (a BertConfig JSON as the original reads)")
    return {k: data[k] for k in keys}


def with_run_configs(cfg: AdvConfig, ckpt: AdvCheckpoint) -> tuple[AdvConfig, list[OriginalFile]]:
    """`cfg` with bert_config / trans_cfg read from the run's JSON files; the files not found."""
    wanted = [("bert_config", bert_file(ckpt.opt, "bert_config_file", "bert_config.json"), _BERT_KEYS)]
    if cfg.image_backbone == "regions":
        trans = _opt_str(ckpt.opt, "trans_cfg")
        trans_file = OriginalFile(Path(trans or "t_cfg.json").name, "opt.trans_cfg", trans)
        wanted.append(("trans_cfg", trans_file, _TRANS_KEYS))
    updates: dict[str, Any] = {}
    not_found: list[OriginalFile] = []
    for field, original, keys in wanted:
        path = locate(ckpt, original)
        if path is None:
            not_found.append(original)
            continue
        section = _section(path, keys)
        if section != dict(getattr(cfg, field) or {}):
            log.info("%s: %s from %s (the run's own) instead of the config's", ckpt.path, field, path)
        updates[field] = section
    if not_found:
        log.info(
            "%s: %s not found; the config's values stand for what shapes cannot tell (head counts)",
            ckpt.path, ", ".join(f.file_name for f in not_found),
        )  # fmt: skip
    new = dataclasses.replace(cfg, **updates)
    new.validate()
    return new, not_found


def explain_mismatch(error: CheckpointError, not_found: list[OriginalFile], ckpt: AdvCheckpoint) -> CheckpointError:
    """A size mismatch when the run's JSON configs were not found: name the file that would settle it."""
    if not not_found:
        return error
    names = " and ".join(f"{f.file_name}" + (f" ({f.option} = {f.stored!r})" if f.stored else "") for f in not_found)
    return CheckpointError(
        f"{error} The run's own {names} would give the architecture: put it beside {ckpt.path} (or where the opt "
        "says, below the training folder)."
    )
