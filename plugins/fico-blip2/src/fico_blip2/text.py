"""Caption text as LAVIS prepares it: `blip_caption` cleaning, then BERT-uncased WordPiece.

The tokenizer is transformers' BertTokenizer built from a local vocab.txt (never downloaded
here). Where that file comes from, in order:
  1. config["vocab_file"];
  2. vocab.txt in a transformers checkpoint folder (or the hub repo's vocab.txt, from the
     local hub cache when offline);
  3. vocab.txt or bert-base-uncased-vocab.txt next to a LAVIS .pth file;
  4. config["builtin_vocab"] == "tiny-chars": a synthetic character vocabulary for the tiny
     test config (random weights only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.bert import tiny_bert_char_vocab

BERT_VOCAB_URL = "https://huggingface.co/google-bert/bert-base-uncased/resolve/main/vocab.txt"
LAVIS_VOCAB_NAMES = ("vocab.txt", "bert-base-uncased-vocab.txt")
_STRIPPED = re.compile(r"([.!\"()*#:;~])")  # the punctuation LAVIS's blip_caption replaces by a space
_SPACES = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int = 50) -> str:
    """LAVIS BlipCaptionProcessor: lower-case, punctuation set -> space, squeeze spaces, max_words."""
    caption = _STRIPPED.sub(" ", caption.lower())
    caption = _SPACES.sub(" ", caption)
    caption = caption.rstrip("\n").strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    return caption


def find_vocab(config: Mapping[str, Any], checkpoint: Any) -> Path | dict[str, int]:
    """Where the WordPiece vocabulary comes from (a vocab.txt path, or the tiny in-memory one)."""
    if config.get("vocab_file"):
        path = Path(config["vocab_file"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"blip2: config vocab_file {path} does not exist")
        return path
    if isinstance(checkpoint, Path):
        folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
        names = ("vocab.txt",) if checkpoint.is_dir() else LAVIS_VOCAB_NAMES
        for name in names:
            if (folder / name).is_file():
                return folder / name
    elif isinstance(checkpoint, str):
        return _hub_vocab(checkpoint)
    if config.get("builtin_vocab") == "tiny-chars":
        return tiny_bert_char_vocab()
    if config.get("builtin_vocab"):
        raise ConfigError(f"blip2: builtin_vocab must be 'tiny-chars' or null, got {config['builtin_vocab']!r}")
    where = "beside the checkpoint" if checkpoint is not None else "anywhere"
    message = (
        f"blip2 needs the bert-base-uncased WordPiece vocabulary and found none {where}: download "
        f"{BERT_VOCAB_URL} and put it next to the checkpoint as vocab.txt (a transformers folder has it), "
        "or pass config={'vocab_file': '/path/to/vocab.txt'}"
    )
    raise (CheckpointError if checkpoint is not None else ConfigError)(message)


def _hub_vocab(hub_id: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=hub_id, filename="vocab.txt"))
    except Exception as exc:  # offline, unknown repo, no such file: all mean "supply it yourself"
        raise CheckpointError(
            f"cannot get vocab.txt of {hub_id} from the hub ({type(exc).__name__}): download config.json, "
            f"model.safetensors (or pytorch_model.bin) and vocab.txt from https://huggingface.co/{hub_id} "
            "into a folder and pass checkpoint=FOLDER"
        ) from None


class CaptionTokenizer:
    """Raw captions -> (input_ids, attention_mask), each (n, max_text_tokens), as LAVIS's retrieval eval."""

    def __init__(self, tokenizer: Any, *, max_tokens: int, max_words: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.max_words = max_words

    def __call__(self, captions: list[str]) -> tuple[Any, Any]:
        cleaned = [pre_caption(c, self.max_words) for c in captions]
        out = self.tokenizer(
            cleaned, padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return out["input_ids"], out["attention_mask"]
