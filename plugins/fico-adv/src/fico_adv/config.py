"""ADV model configuration: the card's config dict, validated, and checked against a checkpoint."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.bert import BERT_BASE_UNCASED

from .bert import BertShape

PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
BUILTIN_TINY_VOCAB = "builtin:tiny"
_TRANS_KEYS = ("hidden_size", "num_attention_heads", "intermediate_size")
_BERT_KEYS = tuple(BERT_BASE_UNCASED)  # the sizes of bert_config.json


@dataclass(frozen=True)
class AdvConfig:
    """Names follow the original options (`opt`) and its two JSON configs (t_cfg.json, bert_config.json)."""

    final_dims: int  # code length (bits)
    img_dim: int = 2048  # region feature width
    max_words: int = 32  # caption length in WordPiece tokens, [CLS] and [SEP] included
    txt_stru: str = "cnn"
    cnn_channels: int = 512  # TextCNN output channels per kernel size (fixed at 512 in the original)
    trans_cfg: Mapping[str, int] | None = None  # image transformer layer (t_cfg.json)
    bert_config: Mapping[str, int] | None = None  # text BERT (bert_config.json of BERT-base uncased)
    vocab_file: str | None = None  # BERT vocab.txt; None: look next to the checkpoint
    do_lower_case: bool = True
    precision: str = "fp32"
    image_backbone: str = "regions"  # "regions" (re-rank model) or "resnet50" (screen model)
    image_size: int = 256  # screen model: images are resized to image_size x image_size
    resnet_block: str = "bottleneck"  # screen model backbone: torchvision ResNet block ("bottleneck" = ResNet-50)
    resnet_layers: tuple[int, ...] | list[int] = (3, 4, 6, 3)  # blocks per stage (ResNet-50)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> AdvConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"unknown ADV config keys {unknown}; known: {sorted(known)}")
        if "final_dims" not in config:
            raise ConfigError("ADV config needs final_dims (the code length)")
        cfg = cls(**dict(config))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in ("final_dims", "img_dim", "max_words", "cnn_channels", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"ADV config {name} must be a positive integer, got {value!r}")
        if self.max_words < 3:
            raise ConfigError(f"ADV config max_words must leave room for [CLS] word [SEP], got {self.max_words}")
        if self.txt_stru != "cnn":
            raise ConfigError(
                f"txt_stru={self.txt_stru!r} is not supported: ADV's published text branch is 'cnn' "
                "(its 'pooling' branch cannot run and 'rnn'/'trans' were never released)"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.image_backbone not in ("regions", "resnet50"):
            raise ConfigError(f"image_backbone must be 'regions' or 'resnet50', got {self.image_backbone!r}")
        _check_section(self.bert_config, _BERT_KEYS, "bert_config")
        if self.image_backbone == "regions":
            _check_section(self.trans_cfg, _TRANS_KEYS, "trans_cfg")
        else:
            if self.resnet_block not in ("basic", "bottleneck"):
                raise ConfigError(f"resnet_block must be 'basic' or 'bottleneck', got {self.resnet_block!r}")
            layers = list(self.resnet_layers)
            if len(layers) != 4 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in layers):
                raise ConfigError(f"resnet_layers must be four positive block counts, got {self.resnet_layers!r}")
        if self.bert_config["max_position_embeddings"] < self.max_words:
            raise ConfigError(
                f"max_words={self.max_words} exceeds BERT's {self.bert_config['max_position_embeddings']} positions"
            )

    @property
    def bert_shape(self) -> BertShape:
        return BertShape(**{k: self.bert_config[k] for k in _BERT_KEYS})

    @property
    def trans_shape(self) -> BertShape:
        return BertShape(**{k: self.trans_cfg[k] for k in _TRANS_KEYS})


def _check_section(section: Mapping[str, Any] | None, keys: tuple[str, ...], name: str) -> None:
    if not isinstance(section, Mapping):
        raise ConfigError(f"ADV config needs {name} = {{{', '.join(keys)}}}")
    missing = [k for k in keys if k not in section]
    extra = sorted(set(section) - set(keys))
    if missing or extra:
        raise ConfigError(f"ADV config {name}: missing {missing}, unknown {extra}; expected exactly {list(keys)}")
    for key in keys:
        value = section[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"ADV config {name}.{key} must be a positive integer, got {value!r}")


def check_against_checkpoint(cfg: AdvConfig, facts: Mapping[str, Any], opt: Mapping[str, Any], where: str) -> None:
    """Every size the checkpoint fixes must equal the config's; the error says what to pass instead."""
    expected: dict[str, Any] = {}
    for key in ("final_dims", "img_dim", "cnn_channels"):
        if key in facts:
            expected[key] = facts[key]
    for section in ("trans_cfg", "bert_config"):
        for key, value in facts.get(section, {}).items():
            expected[f"{section}.{key}"] = value
    opt_keys = ["final_dims", "max_words", "txt_stru", "do_lower_case"]
    opt_keys.append("img_dim" if cfg.image_backbone == "regions" else "image_size")
    for key in opt_keys:
        if key in opt and opt[key] is not None:
            expected.setdefault(key, opt[key])
    if opt.get("model_name") not in (None, "rerank_model") and cfg.image_backbone == "regions":
        raise CheckpointError(
            f"{where}: opt.model_name is {opt['model_name']!r}; the region models need a 'rerank_model'"
        )

    mismatches, override = [], {}
    for key, value in expected.items():
        section, _, sub = key.partition(".")
        have = getattr(cfg, section) if not sub else (getattr(cfg, section) or {}).get(sub)
        if have != value:
            mismatches.append(f"{key}: checkpoint {value!r}, config {have!r}")
            if sub:
                override.setdefault(section, dict(getattr(cfg, section) or {}))[sub] = value
            else:
                override[section] = value
    if mismatches:
        hint = ""
        if "final_dims" in override and override["final_dims"] in (64, 2048) and cfg.image_backbone == "regions":
            hint = f" It is an adv-{override['final_dims']} checkpoint: load it under that name, or pass"
        else:
            hint = " Pass"
        raise CheckpointError(
            f"{where} does not match the config ({'; '.join(mismatches)}).{hint} config={json.dumps(override)}"
        )
