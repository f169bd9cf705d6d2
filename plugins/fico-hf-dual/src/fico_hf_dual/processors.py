"""Image processors and tokenizers: from a checkpoint folder / hub id, or tiny ones for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import transformers

from fico_registry import ModelSpec
from fico_registry.errors import CheckpointError

from .families import HFFamily
from .messages import not_loadable
from .tiny_vocab import bert_vocab, clip_vocab, xlmr_pieces


def _image_processor_class(family: HFFamily, backend: str) -> Any:
    return getattr(transformers, family.image_processor + ("Pil" if backend == "pil" else ""))


def load_processors(spec: ModelSpec, family: HFFamily, source: str, backend: str) -> tuple[Any, Any]:
    """The checkpoint's own preprocessor_config.json and tokenizer files (folder or hub id).

    transformers quietly builds a default image processor or an empty tokenizer when a folder
    lacks these files, which would skew every embedding: a folder must hold them.
    """
    folder = Path(source)
    if folder.is_dir():
        if not (folder / "preprocessor_config.json").is_file():
            raise CheckpointError(
                not_loadable(spec, family, source, FileNotFoundError("no preprocessor_config.json"), "image processor")
            )
        if not any(all((folder / f).is_file() for f in files) for files in family.tokenizer_file_sets):
            raise CheckpointError(
                not_loadable(spec, family, source, FileNotFoundError("no tokenizer files"), "tokenizer")
            )
    try:
        image_processor = transformers.AutoImageProcessor.from_pretrained(source, backend=backend)
    except (OSError, ValueError) as exc:
        raise CheckpointError(not_loadable(spec, family, source, exc, "image processor")) from None
    try:
        tokenizer = getattr(transformers, family.tokenizer_class).from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(not_loadable(spec, family, source, exc, "tokenizer")) from None
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        raise CheckpointError(
            not_loadable(spec, family, source, ValueError("the tokenizer has no vocabulary"), "tokenizer")
        )
    return image_processor, tokenizer


def tiny_processors(family: HFFamily, architecture: dict[str, Any], backend: str) -> tuple[Any, Any]:
    """The real processor classes on tiny vocabularies, sized to the tiny config's images."""
    size = int(architecture["vision_config"]["image_size"])
    image_class = _image_processor_class(family, backend)
    crop = {"height": size, "width": size}
    if family.key == "align":
        image_processor = image_class(size=crop, crop_size=crop)
    else:
        image_processor = image_class(size={"shortest_edge": size}, crop_size=crop)
    if family.tokenizer_class == "CLIPTokenizer":
        tokenizer = transformers.CLIPTokenizer(vocab=clip_vocab(), merges=[])
    elif family.tokenizer_class == "BertTokenizer":
        tokenizer = transformers.BertTokenizer(vocab=bert_vocab())
    else:
        tokenizer = transformers.XLMRobertaTokenizer(vocab=xlmr_pieces())
    return image_processor, tokenizer
