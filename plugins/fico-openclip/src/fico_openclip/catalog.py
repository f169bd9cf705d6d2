"""Model cards for every open_clip architecture, read from the committed JSON manifest.

Imported at discovery time: json and fico_registry's protocol only (no torch, no open_clip).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fico_registry import Checkpoint, Family, Input, ModelSpec, OutputKind

MANIFEST_PATH = Path(__file__).with_name("architectures.json")
FACTORY = "fico_openclip.model:build"
URL = "https://github.com/mlfoundations/open_clip"
LICENSE = "MIT (open_clip code); weights: see each checkpoint's model card on the hub"

# A few-kB random CLIP for tests. Text keeps the real 49408-token CLIP BPE vocabulary, so
# open_clip's own tokenizer (shipped in the wheel) works offline; that table dominates the size.
TINY_VIT = {
    "embed_dim": 8,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1},
}
# ResNet architectures get a tiny ModifiedResNet tower (attention pool) instead.
TINY_RESNET = {
    "embed_dim": 8,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1},
}

# Paper per architecture family (first match wins; order matters: SigLIP2 before SigLIP ...).
_PAPERS = (
    ("coca", "Yu et al., CoCa: Contrastive Captioners are Image-Text Foundation Models, TMLR 2022"),
    ("siglip2", "Tschannen et al., SigLIP 2: Multilingual Vision-Language Encoders, 2025"),
    ("siglip", "Zhai et al., Sigmoid Loss for Language Image Pre-Training, ICCV 2023"),
    ("eva", "Sun et al., EVA-CLIP: Improved Training Techniques for CLIP at Scale, 2023"),
    ("mobileclip2", "Faghri et al., MobileCLIP2: Improving Multi-Modal Reinforced Training, 2025"),
    (
        "mobileclip",
        "Vasu et al., MobileCLIP: Fast Image-Text Models through Multi-Modal Reinforced Training, CVPR 2024",
    ),
    (
        "pe-core",
        "Bolya et al., Perception Encoder: The best visual embeddings are not at the output of the network, 2025",
    ),
    ("vitamin", "Chen et al., ViTamin: Designing Scalable Vision Models in the Vision-Language Era, CVPR 2024"),
    ("clipa", "Li et al., An Inverse Scaling Law for CLIP Training (CLIPA), NeurIPS 2023"),
    ("worldwide", "Chuang et al., Meta CLIP 2: A Worldwide Scaling Recipe, 2025"),
    ("nllb", "Visheratin, NLLB-CLIP: Train Performant Multilingual Image Retrieval Model on a Budget, 2023"),
)
_CLIP_PAPER = (
    "Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021; "
    "Cherti et al., Reproducible scaling laws for contrastive language-image learning (OpenCLIP), CVPR 2023"
)


@cache
def load_manifest() -> dict[str, Any]:
    return json.loads(MANIFEST_PATH.read_text())


def _paper(arch: str) -> str:
    lower = arch.lower()
    return next((paper for key, paper in _PAPERS if key in lower), _CLIP_PAPER)


def _checkpoint(arch: str, tag: str, entry: dict[str, Any]) -> Checkpoint:
    # open_clip itself prefers the hub copy of every tag; the original URL (and its sha256, which
    # is of that file, not of the hub copy) is kept in the description for provenance.
    notes = [f"open_clip tag {arch}:{tag}"]
    if entry["hf_file"]:
        notes.append(f"file {entry['hf_file']}")
    if entry["url"]:
        notes.append(f"original release {entry['url']}" + (f" (sha256 {entry['sha256']})" if entry["sha256"] else ""))
    if entry["quick_gelu"]:
        notes.append("trained with QuickGELU")
    if entry["hf_hub"]:
        return Checkpoint(source=entry["hf_hub"], format="open_clip", description="; ".join(notes))
    return Checkpoint(source=entry["url"], format="pth", sha256=entry["sha256"], description="; ".join(notes))


def _default_checkpoint(tags: list[str]) -> str | None:
    if not tags:
        return None
    return "openai" if "openai" in tags else tags[0]


def spec_for(entry: dict[str, Any]) -> ModelSpec:
    arch = entry["arch"]
    tiny = TINY_RESNET if entry["vision"] == "modified-resnet" else TINY_VIT
    checkpoints = {tag: _checkpoint(arch, tag, p) for tag, p in entry["pretrained"].items()}
    size = entry["image_size"]
    size_text = f"{size}px" if isinstance(size, int) else "x".join(map(str, size)) + "px"
    return ModelSpec(
        name=entry["name"],
        family=Family.VLP,
        output=OutputKind.CONTINUOUS,
        dim=entry["embed_dim"],
        measure="cosine",
        image_input=Input.PIXELS,
        text_input=Input.TEXT,
        factory=FACTORY,
        configs={"default": {"arch": arch}, "tiny": {"arch": arch, "model_cfg": tiny}},
        checkpoints=checkpoints,
        default_checkpoint=_default_checkpoint(list(checkpoints)),
        paper=_paper(arch),
        url=URL,
        license=LICENSE,
        description=(
            f"open_clip {arch} ({entry['model_class']}): vision {entry['vision']}, text {entry['text']}, "
            f"tokenizer {entry['tokenizer']}, {size_text}, {len(checkpoints)} pretrained tag(s)"
        ),
        extra={
            "arch": arch,
            "image_size": size,
            "context_length": entry["context_length"],
            "model_class": entry["model_class"],
            "vision": entry["vision"],
            "text": entry["text"],
            "tokenizer": entry["tokenizer"],
            "open_clip_version": load_manifest()["open_clip_version"],
        },
    )


def all_specs() -> list[ModelSpec]:
    return [spec_for(entry) for entry in load_manifest()["architectures"]]


@cache
def _by_arch() -> dict[str, dict[str, Any]]:
    return {entry["arch"]: entry for entry in load_manifest()["architectures"]}


def architecture(arch: str) -> dict[str, Any] | None:
    """The manifest entry of a built-in open_clip architecture, if it has one."""
    return _by_arch().get(arch)
