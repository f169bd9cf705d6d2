"""One-line errors for checkpoints that are missing or incomplete."""

from __future__ import annotations

from pathlib import Path

from fico_registry import ModelSpec

from .families import HFFamily

WEIGHT_FILES = "config.json and model.safetensors (or pytorch_model.bin)"


def checkpoint_files(family: HFFamily) -> str:
    return f"{WEIGHT_FILES}, preprocessor_config.json and the tokenizer files ({family.tokenizer_files})"


def not_loadable(spec: ModelSpec, family: HFFamily, source: str, exc: BaseException, part: str) -> str:
    """A local folder names the part that failed; a hub id that is not cached lists every file to fetch."""
    if Path(source).exists():
        reason = " ".join(str(exc).split())[:300]
        return (
            f"{spec.name}: cannot read the {part} from {source} ({reason}); "
            f"{family.model_class} checkpoint folders hold {checkpoint_files(family)}"
        )
    return (
        f"{spec.name}: {source!r} is not in the local Hugging Face cache and could not be downloaded (offline?): "
        f"download {checkpoint_files(family)} from https://huggingface.co/{source} into a folder and pass "
        "checkpoint=FOLDER"
    )
