"""Captions as unilm beit3 tokenises them: XLMRobertaTokenizer("beit3.spm"), then
`[<s>] pieces[:max_len - 2] [</s>]` padded with <pad> to max_len (num_max_bpe_tokens = 64).

unilm used transformers' slow, sentencepiece-backed XLMRobertaTokenizer. Its ids are the
fairseq dictionary's: <s>=0, <pad>=1, </s>=2, <unk>=3, then sentencepiece id + 1 for every
piece (sentencepiece id 0, its own <unk>, becomes 3), and <mask> = pieces + 1. This module
reads beit3.spm with the sentencepiece package and applies that mapping itself, so nothing
depends on the transformers version (transformers 5 dropped the slow class, and its fast
XLMRobertaTokenizer cannot read a bare .spm file without protobuf). Literal special tokens
in a caption ("<s>", "<mask>", ...) are kept whole, as the slow tokenizer's added-token
split did (transformers 4.34+, where only <mask> strips the whitespace on its left).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import CheckpointError, ConfigError, DataFormatError

from .config import Beit3Config

BOS, PAD, EOS, UNK = 0, 1, 2, 3  # fairseq / XLM-R special ids
FAIRSEQ_OFFSET = 1  # sentencepiece id -> model id
SPM_FILE_NAME = "beit3.spm"
SPM_URL = "https://github.com/addf400/files/releases/download/beit3/beit3.spm"
_SPECIALS = {"<s>": BOS, "<pad>": PAD, "</s>": EOS, "<unk>": UNK}
_SPECIAL_SPLIT = re.compile("(<s>|</s>|<unk>|<pad>|<mask>)")

# Sentences for the in-memory sentencepiece model of the tiny test config, after the
# conformance kit's sample captions (which it must tokenise).
_TINY_CORPUS_MORE = (
    "a man riding a horse on the beach",
    "a dog playing with a ball in the park",
    "people walking down a busy city street",
    "a plate of food with vegetables and rice",
)


@dataclass(frozen=True)
class Captions:
    """Token ids and padding mask (True at <pad>), both (B, max_tokens)."""

    ids: torch.Tensor
    padding_mask: torch.Tensor


class CaptionTokenizer:
    def __init__(self, processor: Any, max_tokens: int, *, source: str, model: str = "beit3") -> None:
        self.sp = processor
        self.max_tokens = max_tokens
        self.source = source
        self.model = model
        self.mask_id = processor.get_piece_size() + FAIRSEQ_OFFSET
        self.vocab_size = self.mask_id + 1

    def piece_ids(self, text: str) -> list[int]:
        """XLMRobertaTokenizer.convert_tokens_to_ids(tokenize(text)): no <s>, </s>, truncation or padding."""
        chunks = _SPECIAL_SPLIT.split(text)  # text, special, text, special, ..., text
        for i in range(1, len(chunks), 2):
            if chunks[i] == "<mask>":  # AddedToken("<mask>", lstrip=True)
                chunks[i - 1] = chunks[i - 1].rstrip()
        ids: list[int] = []
        for i, chunk in enumerate(chunks):
            if i % 2:
                ids.append(self.mask_id if chunk == "<mask>" else _SPECIALS[chunk])
            elif chunk:
                for piece in self.sp.encode(chunk, out_type=str):
                    spm_id = self.sp.piece_to_id(piece)
                    ids.append(spm_id + FAIRSEQ_OFFSET if spm_id else UNK)
        return ids

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """unilm BaseDataset._get_text_segment: ids and padding mask (1 = <pad>) of length max_tokens."""
        pieces = self.piece_ids(text)
        if not pieces:
            raise DataFormatError(
                f"{self.model}: caption {text!r} has no tokens; unilm's BEiT-3 refuses empty text segments too"
            )
        ids = [BOS, *pieces[: self.max_tokens - 2], EOS]
        padding = self.max_tokens - len(ids)
        return ids + [PAD] * padding, [0] * len(ids) + [1] * padding

    def __call__(self, texts: Any) -> Captions:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise DataFormatError(f"{self.model} expects a list of caption strings")
        rows = [self.encode(t) for t in texts]
        ids = torch.tensor([r[0] for r in rows], dtype=torch.long).view(len(rows), self.max_tokens)
        mask = torch.tensor([r[1] for r in rows], dtype=torch.bool).view(len(rows), self.max_tokens)
        return Captions(ids=ids, padding_mask=mask)


def load_sentencepiece(path: Path) -> Any:
    import sentencepiece

    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"{path} is not a readable sentencepiece model ({exc}); BEiT-3 needs {SPM_URL}") from None


@functools.lru_cache(maxsize=1)
def tiny_sentencepiece_proto() -> bytes:
    """A 60-piece unigram model trained on a few fixed sentences (deterministic, offline, ~0.1 s)."""
    import io

    import sentencepiece

    from fico_registry.plugin_api.testing import SAMPLE_CAPTIONS

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter((*SAMPLE_CAPTIONS, *_TINY_CORPUS_MORE)),
        model_writer=buffer,
        vocab_size=60,
        model_type="unigram",
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return buffer.getvalue()


def find_sentencepiece(config: Beit3Config, checkpoint: Path | None) -> Path | None:
    """Where beit3.spm is: config["sentencepiece_model"], else beside the checkpoint, else (unless
    the config has a built-in model) $FICO_HOME/checkpoints/beit3.spm. None = use the built-in."""
    if config.sentencepiece_model is not None:
        path = Path(config.sentencepiece_model).expanduser()
        if not path.is_file():
            raise ConfigError(f"sentencepiece_model {path} does not exist; download {SPM_URL}")
        return path
    if checkpoint is not None:
        folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
        if (folder / SPM_FILE_NAME).is_file():
            return folder / SPM_FILE_NAME
    if config.builtin_spm is not None:
        return None
    from fico_registry.plugin_api import fico_home

    fallback = fico_home() / "checkpoints" / SPM_FILE_NAME
    if fallback.is_file():
        return fallback
    beside = f" or beside {checkpoint}" if checkpoint is not None else ""
    raise CheckpointError(
        f"BEiT-3 needs its sentencepiece model: download {SPM_URL} to {fallback}{beside}, "
        "or pass config sentencepiece_model=PATH"
    )


def make_tokenizer(config: Beit3Config, checkpoint: Path | None, *, model: str = "beit3") -> CaptionTokenizer:
    path = find_sentencepiece(config, checkpoint)
    if path is None:
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_proto=tiny_sentencepiece_proto())
        source = f"builtin:{config.builtin_spm}"
    else:
        processor, source = load_sentencepiece(path), str(path)
    tokenizer = CaptionTokenizer(processor, config.max_text_tokens, source=source, model=model)
    if tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(
            f"{model}: the sentencepiece model {source} gives ids up to {tokenizer.vocab_size - 1} (<mask>), "
            f"beyond the text embedding's {config.vocab_size} rows: wrong beit3.spm for this config"
        )
    return tokenizer
