"""The files a fine-tuned X-VLM checkpoint's saved config points to, applied to the plugin config.

Retrieval.py saves `{"model": state_dict, "config": <the YAML config>}` as
`{output_dir}/checkpoint_best.pth` (and `config.yaml` beside it). The model was built from
`config["vision_config"]` (Swin JSON: image_res, window_size, embed_dim, depths, num_heads),
`config["text_config"]` (BertConfig JSON, with fusion_layer) and the tokenizer from
`config["text_encoder"]` (a folder holding vocab.txt), all relative to the X-VLM repository the
script ran in. When found (beside the checkpoint or below the folders above it:
fico_registry.plugin_api.run_folders) they and the saved embed_dim / max_tokens are the configuration;
when not, the plugin config stands and an architecture mismatch names the file to supply.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.run_folders import find_original_file

log = logging.getLogger(__name__)

RUN_CHECKPOINTS = ("checkpoint_best.pth",)  # Retrieval.py's best model in output_dir
# Swin JSON key -> plugin config key (X-VLM fixes patch_size=4 and mlp_ratio=4 in code)
SWIN_KEYS = {
    "image_res": "image_res",
    "window_size": "window_size",
    "embed_dim": "swin_embed_dim",
    "depths": "swin_depths",
    "num_heads": "swin_num_heads",
}
BERT_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "fusion_layer")  # fmt: skip
BERT_DEFAULTS = {"type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0}  # transformers' BertConfig
SAVED_KEYS = ("embed_dim", "max_tokens")  # the YAML values the model / tokenizer were built with


@dataclass(frozen=True)
class OriginalFile:
    file_name: str
    option: str
    stored: str


def saved_config(checkpoint: Path, saved: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The checkpoint's own config, else the config.yaml Retrieval.py writes beside it (plain YAML)."""
    if saved is not None or not (checkpoint.parent / "config.yaml").is_file():
        return saved
    try:
        import yaml
    except ImportError:
        log.info("%s: config.yaml beside it is not read (PyYAML is not installed)", checkpoint)
        return None
    try:
        data = yaml.safe_load((checkpoint.parent / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{checkpoint.parent / 'config.yaml'}: not a readable YAML config ({exc})") from None
    return data if isinstance(data, Mapping) else None


def _stored(saved: Mapping[str, Any], key: str) -> str | None:
    value = saved.get(key)
    return value if isinstance(value, str) and value else None


def _json(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _swin(path: Path) -> dict[str, Any]:
    data = _json(path)
    absent = [k for k in SWIN_KEYS if k not in data]
    if absent:
        raise CheckpointError(f"{path}: lacks {', '.join(absent)} (X-VLM's Swin config, e.g. config_swinB_384.json)")
    return {ours: data[theirs] for theirs, ours in SWIN_KEYS.items()}


def _bert(path: Path) -> dict[str, Any]:
    data = _json(path)
    absent = [k for k in BERT_REQUIRED if k not in data]
    if absent:
        raise CheckpointError(f"{path}: lacks {', '.join(absent)} (X-VLM's BERT config, e.g. config_bert.json)")
    return {k: data.get(k, BERT_DEFAULTS.get(k)) for k in (*BERT_REQUIRED, *BERT_DEFAULTS)}


def apply_run_files(
    config: Mapping[str, Any], saved: Mapping[str, Any] | None, checkpoint: Path
) -> tuple[dict[str, Any], list[OriginalFile]]:
    """(config with the run's own values, the JSON files the saved config names that were not found)."""
    out = dict(config)
    if saved is None or saved.get("use_clip_vit") or saved.get("use_swin") is False or saved.get("use_roberta"):
        return out, []  # nothing to read, or a variant check_saved_config refuses by name
    not_found: list[OriginalFile] = []
    for key, reader in (("vision_config", _swin), ("text_config", _bert)):
        stored = _stored(saved, key)
        if stored is None:
            continue
        path = find_original_file(stored, checkpoint, beside=(Path(stored).name,))
        if path is None:
            not_found.append(OriginalFile(Path(stored).name, f"config['{key}']", stored))
            continue
        out.update(reader(path))
    out.update({k: saved[k] for k in SAVED_KEYS if isinstance(saved.get(k), int) and not isinstance(saved[k], bool)})
    changed = sorted(k for k in out if out[k] != config.get(k))
    if changed:
        log.info("%s: %s from the run's own config files (not the plugin config)", checkpoint, ", ".join(changed))
    return out, not_found


def vocab_file(saved: Mapping[str, Any] | None) -> OriginalFile | None:
    """vocab.txt in config['text_encoder'], the folder BertTokenizer.from_pretrained read."""
    folder = _stored(saved, "text_encoder") if saved is not None else None
    if folder is None:
        return None
    return OriginalFile("vocab.txt", "config['text_encoder'] + '/vocab.txt'", os.path.join(folder, "vocab.txt"))


def explain(error: CheckpointError, not_found: list[OriginalFile], checkpoint: Path) -> CheckpointError:
    """An architecture mismatch when the run's JSON configs were not found: name the file(s) that settle it."""
    if not not_found:
        return error
    names = " and ".join(f"{f.file_name} ({f.option} = {f.stored!r})" for f in not_found)
    return CheckpointError(
        f"{error}. The checkpoint's own config points to {names}, not found beside {checkpoint} nor below the "
        "folders above it: put it beside the checkpoint and the architecture comes from it"
    )
