"""Captions as X-VLM's retrieval evaluation prepares them.

1. dataset/utils.py pre_caption (re_eval_dataset, max_words=30): lower-case, DELETE each of
   , . ' ! ? " ( ) * # : ; ~, turn '-' and '/' into spaces, '<person>' into 'person', squeeze
   whitespace, strip, keep the first max_words words; an empty result is an error (as there).
2. BERT-uncased WordPiece (the repo's tokenization_bert.BertTokenizer over
   data/bert-base-uncased/vocab.txt), `padding='max_length', truncation=True,
   max_length=max_tokens` (40).

The tokenizer is transformers' BertTokenizer built from a local vocab.txt; nothing is
downloaded. Where vocab.txt comes from, in order: config["vocab_file"]; vocab.txt or
bert-base-uncased-vocab.txt next to the checkpoint file; for the tiny config,
config["builtin_vocab"] == "tiny-chars" (a synthetic character vocabulary).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import CheckpointError, ConfigError, DataFormatError
from fico_registry.plugin_api.bert import bert_tokenizer, tiny_bert_char_vocab
from fico_registry.plugin_api.run_folders import find_original_file, missing_original_file

from .run_files import OriginalFile

BERT_VOCAB_URL = "https://huggingface.co/google-bert/bert-base-uncased/resolve/main/vocab.txt"
VOCAB_NAMES = ("vocab.txt", "bert-base-uncased-vocab.txt")
_DELETED = re.compile(r"([,.'!?\"()*#:;~])")
_SPACES = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int = 30) -> str:
    text = _DELETED.sub("", caption.lower()).replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _SPACES.sub(" ", text).rstrip("\n").strip(" ")
    words = text.split(" ")
    if len(words) > max_words:
        text = " ".join(words[:max_words])
    if not text:
        raise DataFormatError(f"xvlm: caption {caption!r} is empty after X-VLM's pre_caption cleaning")
    return text


def find_vocab(
    config: Mapping[str, Any], checkpoint: Path | None, *, original: OriginalFile | None = None
) -> Path | dict[str, int]:
    """config vocab_file; else beside the checkpoint; else `original` (vocab.txt in the saved config's
    text_encoder folder, found below the folders above the checkpoint); else builtin_vocab."""
    if config.get("vocab_file"):
        path = Path(config["vocab_file"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"xvlm: config vocab_file {path} does not exist")
        return path
    if checkpoint is not None:
        folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
        for name in VOCAB_NAMES:
            if (folder / name).is_file():
                return folder / name
        if original is not None and not checkpoint.is_dir():
            found = find_original_file(original.stored, checkpoint)
            if found is not None:
                return found
    if config.get("builtin_vocab") == "tiny-chars":
        return tiny_bert_char_vocab()
    if config.get("builtin_vocab"):
        raise ConfigError(f"xvlm: builtin_vocab must be 'tiny-chars' or null, got {config['builtin_vocab']!r}")
    if checkpoint is not None and original is not None:
        raise missing_original_file(
            "xvlm", "vocab.txt", checkpoint=checkpoint, option=original.option, stored=original.stored,
            config_key="vocab_file", why=f"bert-base-uncased's vocabulary ({BERT_VOCAB_URL})",
        )  # fmt: skip
    where = f"next to {checkpoint}" if checkpoint is not None else "(no checkpoint given)"
    message = (
        f"xvlm needs the bert-base-uncased vocab.txt and found none {where}: download {BERT_VOCAB_URL} "
        "next to the checkpoint as vocab.txt, or pass config={'vocab_file': '/path/to/vocab.txt'}"
    )
    raise (CheckpointError if checkpoint is not None else ConfigError)(message)


def make_tokenizer(vocab: Path | dict[str, int], vocab_size: int) -> Any:
    """transformers' BertTokenizer (uncased, as bert-base-uncased) over the given vocabulary."""
    return bert_tokenizer(vocab, vocab_size, embedder="the text encoder")


class CaptionTokenizer:
    """Raw captions -> (input_ids, attention_mask), each (n, max_tokens) int64."""

    def __init__(self, tokenizer: Any, *, max_tokens: int, max_words: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.max_words = max_words

    def __call__(self, captions: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise DataFormatError("xvlm expects a list of caption strings")
        if len(captions) == 0:
            raise DataFormatError("xvlm: empty caption batch")
        cleaned = [pre_caption(c, self.max_words) for c in captions]
        out = self.tokenizer(
            cleaned, padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return out["input_ids"], out["attention_mask"]
