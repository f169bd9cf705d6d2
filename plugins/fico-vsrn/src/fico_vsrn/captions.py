"""Raw captions -> word ids, with the vocabulary VSRN was trained with.

The original turns a caption into ids as
`[vocab('<start>'), *map(vocab, nltk.word_tokenize(str(caption).lower().decode('utf-8'))), vocab('<end>')]`
on Python 2 with a pre-3.5 NLTK: ASCII-only lower-casing, Treebank word rules. The core's
CaptionTokenizer(rules="treebank", lowercase="ascii") reproduces that without downloaded data.
No caption is truncated on the retrieval path (`max_len` only bounds the caption-generation
targets), and batches are padded with <pad> = 0 as the original collate_fn.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import DataFormatError
from fico_registry.plugin_api.captions import CaptionTokenizer, Vocabulary, encode_captions, find_vocab_file, load_vocab
from fico_registry.plugin_api.run_folders import find_original_file, missing_original_file

log = logging.getLogger(__name__)


def vocab_file_name(data_name: str) -> str:
    """`vocab/{data_name}_vocab.pkl` in the original repository (e.g. f30k_precomp_vocab.pkl)."""
    return f"{data_name}_vocab.pkl"


def resolve_vocabulary(
    settings: Mapping[str, Any],
    data_name: str,
    checkpoint: Path | None,
    *,
    model_name: str,
    opt: Mapping[str, Any] | None = None,
    opt_checkpoint: Path | None = None,
) -> Vocabulary | None:
    """The vocabulary file (config vocab_path, beside the checkpoint, or where its opt says) or vocab_words.

    A trained model is only meaningful with the vocabulary it was trained with, so with a
    checkpoint the vocabulary must be a file: config vocab_path; `{data_name}_vocab.pkl` beside the
    checkpoint (or in its vocab/ folder; `checkpoint` may be a folder); else the file train.py read,
    `{opt.vocab_path}/{data_name}_vocab.pkl` relative to the folder it ran in (found below the
    folders above `opt_checkpoint`, the file `opt` came from: fico_registry.plugin_api.run_folders). In-memory
    `vocab_words` (tiny configs) serve random init only. None: random init without any vocabulary.
    """
    vocab_path = settings.get("vocab_path")
    file_name = vocab_file_name(data_name)
    if vocab_path:
        return load_vocab(find_vocab_file(file_name, vocab_path=vocab_path))
    if checkpoint is not None:
        folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
        beside = next((p for p in (folder / file_name, folder / "vocab" / file_name) if p.is_file()), None)
        if beside is not None:
            return load_vocab(beside)
        stored = opt.get("vocab_path") if opt else None
        if not isinstance(stored, str) or not stored:  # raises, naming where the file was looked for
            return load_vocab(find_vocab_file(file_name, checkpoint=checkpoint))
        origin = opt_checkpoint if opt_checkpoint is not None else checkpoint
        saved_dir = opt.get("logger_name")  # train.py saves the checkpoints in opt.logger_name
        found = find_original_file(
            os.path.join(stored, file_name), origin, saved_dir=saved_dir if isinstance(saved_dir, str) else None
        )
        if found is None:
            raise missing_original_file(
                model_name,
                file_name,
                checkpoint=origin,
                option="opt.vocab_path",
                stored=stored,
                config_key="vocab_path",
                why="the pickled vocabulary train.py built the model with",
            )
        return load_vocab(found)
    words = settings.get("vocab_words")
    if words is not None:
        return Vocabulary.from_words(words, source=f"{model_name} config vocab_words")
    log.warning(
        "%s: no vocabulary (set vocab_path to the original %s): every word maps to <unk>; fine for timing only",
        model_name,
        file_name,
    )
    return None


class CaptionIds:
    """Tokenise captions and map them to padded word ids plus lengths (<start>/<end> included)."""

    def __init__(self, vocab: Vocabulary | None, *, tokenizer: str, lowercase: str, model_name: str) -> None:
        self.vocab = vocab if vocab is not None else Vocabulary.from_words([], source="special tokens only")
        self.tokenizer = CaptionTokenizer(tokenizer, lowercase)
        self.model_name = model_name

    def __call__(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise DataFormatError(f"{self.model_name}: encode_texts takes a list of caption strings")
        ids = encode_captions(captions, self.vocab, self.tokenizer)
        lengths = torch.tensor([len(seq) for seq in ids], dtype=torch.long)
        batch = torch.zeros(len(ids), int(lengths.max()) if len(ids) else 1, dtype=torch.long)
        for row, seq in enumerate(ids):
            batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return batch, lengths
