"""Build the architecture manifest from the installed open_clip (imports open_clip: never at discovery).

The manifest is committed as package data (architectures.json) so that listing models reads JSON
only. `scripts/make_manifest.py` writes it; a test checks it still matches the installed open_clip.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

MANIFEST_PATH = Path(__file__).with_name("architectures.json")
# openaipublic URLs carry the full sha256 of the file as their second-to-last path segment
_OPENAI_SHA = re.compile(r"/([0-9a-f]{64})/[^/]+$")
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def card_name(arch: str) -> str:
    """The fico model name of an open_clip architecture: 'ViT-B-32' -> 'openclip-vit-b-32'."""
    return "openclip-" + arch.lower()


def _tower_names(arch: str, cfg: dict[str, Any]) -> tuple[str, str, str]:
    vision_cfg, text_cfg = cfg["vision_cfg"], cfg["text_cfg"]
    if "timm_model_name" in vision_cfg:
        vision = f"timm:{vision_cfg['timm_model_name']}"
    elif isinstance(vision_cfg.get("layers"), (list, tuple)):
        vision = "modified-resnet"
    else:
        vision = "vit"
    text = f"hf:{text_cfg['hf_model_name']}" if "hf_model_name" in text_cfg else "clip-transformer"
    # Same order of decisions as open_clip.get_tokenizer for a built-in name.
    if text_cfg.get("hf_tokenizer_name"):
        tokenizer = f"hf:{text_cfg['hf_tokenizer_name']}"
    elif "siglip" in arch.lower():
        variant = "gemma" if "siglip2" in arch.lower() else "mc4" if "i18n" in arch.lower() else "c4-en"
        tokenizer = f"siglip:{variant}"
    else:
        tokenizer = "clip-bpe"
    return vision, text, tokenizer


def _model_class(cfg: dict[str, Any]) -> str:
    custom_text = cfg.get("custom_text", False) or "hf_model_name" in cfg["text_cfg"]
    if custom_text:
        return "CoCa" if "multimodal_cfg" in cfg else "CustomTextCLIP"
    return "CLIP"


def _pretrained_entry(pcfg: dict[str, Any]) -> dict[str, Any]:
    hf_hub = pcfg.get("hf_hub") or ""
    repo, filename = os.path.split(hf_hub) if hf_hub else ("", "")
    url = pcfg.get("url") or ""
    match = _OPENAI_SHA.search(url) if "openaipublic" in url else None
    entry: dict[str, Any] = {
        "hf_hub": repo or None,
        "hf_file": filename or None,  # None: open_clip's default file names in the repo
        "url": url or None,
        "sha256": match.group(1) if match else None,  # of the file at `url`
        "quick_gelu": bool(pcfg.get("quick_gelu", False)),
    }
    entry["preprocess"] = {k: _plain(pcfg[k]) for k in _PREPROCESS_KEYS if k in pcfg}
    return entry


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def build_manifest() -> dict[str, Any]:
    """Every architecture open_clip lists, with its pretrained tags, as plain JSON data."""
    from fico_registry.plugin_api.compat import ensure_torchvision

    ensure_torchvision()
    import open_clip

    archs = []
    seen: dict[str, str] = {}
    for arch in open_clip.list_models():
        name = card_name(arch)
        if name in seen:
            raise ValueError(f"open_clip architectures {seen[name]!r} and {arch!r} both map to {name!r}")
        seen[name] = arch
        cfg = open_clip.get_model_config(arch)
        vision, text, tokenizer = _tower_names(arch, cfg)
        image_size = cfg["vision_cfg"]["image_size"]
        archs.append(
            {
                "arch": arch,
                "name": name,
                "embed_dim": int(cfg["embed_dim"]),
                "image_size": _plain(image_size),
                "context_length": cfg["text_cfg"].get("context_length"),
                "model_class": _model_class(cfg),
                "quick_gelu": bool(cfg.get("quick_gelu", False)),
                "vision": vision,
                "text": text,
                "tokenizer": tokenizer,
                "pretrained": {
                    tag: _pretrained_entry(open_clip.get_pretrained_cfg(arch, tag))
                    for tag in open_clip.list_pretrained_tags_by_model(arch)
                },
            }
        )
    return {"open_clip_version": open_clip.__version__, "architectures": archs}


def dumps(manifest: dict[str, Any]) -> str:
    """Stable text form (what is committed): open_clip's order, one key per line."""
    return json.dumps(manifest, indent=1) + "\n"
