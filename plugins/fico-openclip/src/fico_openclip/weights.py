"""Where an open_clip model's configuration and weights come from, decided before anything is built.

What load_model hands the factory, and what it becomes:
  None                          random init of the architecture (or of the config's model_cfg)
  a card's hub id / tag name    that open_clip pretrained tag: its file from the Hugging Face cache,
                                with the tag's QuickGELU setting and preprocessing
  'hf-hub:org/repo', 'org/repo' an open_clip repo on the hub (open_clip_config.json + weights)
  'local-dir:PATH' or a folder  an open_clip folder (open_clip_config.json + weights); a folder
                                without that config is searched for a weights file for the architecture
  a file                        a state dict (.safetensors, .bin, .pt, .pth, .npz) loaded by open_clip
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fico_registry import ModelSpec
from fico_registry.errors import CheckpointError

HF_HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"
OPEN_CLIP_CONFIG = "open_clip_config.json"
# open_clip's own preference when a folder holds several weights files
WEIGHT_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Weights:
    """The resolved source: what to give open_clip.create_model, and the file to load, if any."""

    model_name: str  # a built-in architecture, 'hf-hub:org/repo' or 'local-dir:/path'
    file: Path | None = None  # weights to load into the built-in architecture
    tag: str | None = None  # the open_clip pretrained tag these weights belong to
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)  # open_clip's cfg of that tag

    @property
    def carries_config(self) -> bool:
        """True when the architecture comes from the source itself (hub repo or local folder)."""
        return self.model_name.startswith((HF_HUB, LOCAL_DIR))


def resolve(spec: ModelSpec, arch: str, checkpoint: str | Path | None) -> Weights:
    if checkpoint is None:
        return Weights(arch)
    if isinstance(checkpoint, Path):
        return _resolve_path(spec, arch, checkpoint)
    text = str(checkpoint)
    if text.startswith(LOCAL_DIR):
        return _resolve_path(spec, arch, Path(text[len(LOCAL_DIR) :]).expanduser())
    if text.startswith(HF_HUB):
        return Weights(text)
    tag = _tag_for_source(spec, text)
    if tag is not None:
        return _resolve_tag(spec, arch, tag)
    if Path(text).expanduser().exists():  # before the hub-id test: 'ckpts/model.pt' looks like 'org/repo'
        return _resolve_path(spec, arch, Path(text).expanduser())
    if _HUB_ID.match(text):
        return Weights(HF_HUB + text)
    raise CheckpointError(
        f"{spec.name}: checkpoint {text!r} is not a pretrained tag of {arch} "
        f"({', '.join(spec.checkpoints) or 'none'}), "
        "an 'org/repo' / 'hf-hub:org/repo' hub id, or an existing file or folder"
    )


def _tag_for_source(spec: ModelSpec, text: str) -> str | None:
    if text in spec.checkpoints:
        return text
    return next((tag for tag, ck in spec.checkpoints.items() if ck.source == text), None)


def _pretrained_cfg(arch: str, tag: str) -> dict[str, Any]:
    import open_clip

    return dict(open_clip.get_pretrained_cfg(arch, tag))


def _resolve_tag(spec: ModelSpec, arch: str, tag: str) -> Weights:
    """Find the tag's weights the way open_clip does (hub first), offline-safe, with one clear error."""
    import open_clip

    cfg = _pretrained_cfg(arch, tag)
    try:
        file = open_clip.download_pretrained(cfg)
    except Exception:  # hub, network and file errors come in many types
        raise CheckpointError(_not_cached(spec, tag, cfg)) from None
    if not file:
        raise CheckpointError(f"{spec.name}: open_clip knows no download location for tag {tag!r}")
    return Weights(arch, Path(file), tag, cfg)


def _not_cached(spec: ModelSpec, tag: str, cfg: dict[str, Any]) -> str:
    repo, filename = (cfg.get("hf_hub") or "").rstrip("/"), None
    if repo.count("/") > 1:
        repo, filename = repo.rsplit("/", 1)
    files = filename or "open_clip_model.safetensors (or open_clip_pytorch_model.bin)"
    where = f"https://huggingface.co/{repo}" if repo else cfg.get("url", "?")
    return (
        f"{spec.name}: weights of tag {tag!r} are not in the local Hugging Face cache and could not be downloaded "
        f"(offline?): download {files} from {where} and pass checkpoint=PATH to that file or its folder"
    )


def _resolve_path(spec: ModelSpec, arch: str, path: Path) -> Weights:
    if not path.exists():
        raise CheckpointError(f"{spec.name}: checkpoint {path} does not exist")
    if path.is_dir():
        if (path / OPEN_CLIP_CONFIG).is_file():
            return Weights(LOCAL_DIR + str(path))
        file = _weights_in(path)
        if file is None:
            raise CheckpointError(
                f"{spec.name}: folder {path} has neither {OPEN_CLIP_CONFIG} nor a weights file "
                f"({', '.join(WEIGHT_FILES[:3])}, *.safetensors, *.bin, *.pt, *.pth)"
            )
    else:
        file = path
    _refuse_torchscript(spec, arch, file)
    tag = _tag_for_path(arch, file)
    return Weights(arch, file, tag, _pretrained_cfg(arch, tag) if tag else {})


def _weights_in(folder: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for ext in ("safetensors", "bin", "pt", "pth", "npz") for p in folder.glob(f"*.{ext}"))
    return found[0] if found else None


def _tag_for_path(arch: str, file: Path) -> str | None:
    """Recognise a tag's file by its release file name, hub repo folder, or Hugging Face cache folder."""
    from .catalog import architecture

    entry = architecture(arch)
    if entry is None:
        return None
    parts = set(file.parts)
    for tag, pretrained in entry["pretrained"].items():
        url, repo = pretrained["url"], pretrained["hf_hub"]
        if url and file.name == url.rsplit("/", 1)[-1]:
            return tag
        if repo and (repo.split("/")[-1] in parts or "models--" + repo.replace("/", "--") in parts):
            return tag
    return None


def _refuse_torchscript(spec: ModelSpec, arch: str, file: Path) -> None:
    """OpenAI's .pt releases are TorchScript archives: loading them runs code, so point to the hub copy."""
    if not zipfile.is_zipfile(file):
        return
    with zipfile.ZipFile(file) as archive:
        if not any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist()):
            return
    tag = _tag_for_path(arch, file)
    hint = f" (tag {tag!r}: {spec.checkpoints[tag].source})" if tag in spec.checkpoints else ""
    raise CheckpointError(
        f"{spec.name}: {file} is a TorchScript archive (OpenAI's original .pt release); fico does not load "
        f"archives that carry code. Use the converted state dict of the same weights from the hub{hint}"
    )
