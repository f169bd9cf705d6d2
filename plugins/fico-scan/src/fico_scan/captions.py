"""Raw captions -> padded word-id tensors, with the vocabulary the model was trained with."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import CheckpointError, ConfigError, DataFormatError
from fico_registry.plugin_api.captions import CaptionTokenizer, Vocabulary, encode_captions, find_vocab_file, load_vocab
from fico_registry.plugin_api.run_folders import find_original_file, missing_original_file

log = logging.getLogger(__name__)


def resolve_vocabulary(
    options: Mapping[str, Any],
    checkpoint: Path | None,
    *,
    file_name: str,
    model_name: str,
    opt: Mapping[str, Any] | None = None,
) -> Vocabulary | None:
    """The vocabulary the model was trained with, first found of:

    config vocab_path; `file_name` beside the checkpoint (or in its vocab/ folder); the file the
    checkpoint's own `opt.vocab_path` names (train.py reads `{vocab_path}/{data_name}_vocab.json`,
    relative to the folder it ran in: found below the folders above the checkpoint, see
    fico_registry.plugin_api.run_folders); config vocab_words (an in-memory word list: tiny test configs).
    None means random init without any vocabulary (every word is <unk>; only for timing).
    """
    vocab_path = options.get("vocab_path")
    if vocab_path:
        return load_vocab(find_vocab_file(file_name, vocab_path=vocab_path))
    stored = stored_file = None
    if checkpoint is not None:
        stored = opt.get("vocab_path") if opt else None
        stored_file = os.path.join(stored, file_name) if isinstance(stored, str) and stored else None
        saved_dir = opt.get("model_name") if opt else None
        found = find_original_file(
            stored_file,
            checkpoint,
            saved_dir=saved_dir if isinstance(saved_dir, str) else None,
            beside=(file_name, f"vocab/{file_name}"),
        )
        if found is not None:
            return load_vocab(found)
    words = options.get("vocab_words")
    if words is not None:
        return Vocabulary.from_words(words, source=f"{model_name} config vocab_words")
    if checkpoint is not None and stored_file is not None:
        raise missing_original_file(
            model_name,
            file_name,
            checkpoint=checkpoint,
            option="opt.vocab_path",
            stored=stored,
            config_key="vocab_path",
            why="the vocabulary train.py built the model with",
        )
    if checkpoint is not None:  # raises, naming where the file was looked for
        return load_vocab(find_vocab_file(file_name, checkpoint=checkpoint))
    log.warning(
        "%s: no vocabulary (set vocab_path to the original %s): every word maps to <unk>; fine for timing only",
        model_name,
        file_name,
    )
    return None


def embedding_rows(vocab: Vocabulary | None, options: Mapping[str, Any], *, model_name: str) -> int:
    if vocab is not None:
        return len(vocab)
    rows = options.get("vocab_size")
    if not isinstance(rows, int) or rows < 4:
        raise ConfigError(f"{model_name}: without a vocabulary, vocab_size (embedding rows, >= 4) must be set")
    return rows


def check_embedding(rows_in_checkpoint: int, vocab: Vocabulary, opt_vocab_size: Any, *, where: str) -> None:
    """The original sets opt.vocab_size = len(vocab) and builds embed with that many rows."""
    if rows_in_checkpoint != len(vocab):
        hint = f" (the checkpoint's opt.vocab_size is {opt_vocab_size})" if opt_vocab_size is not None else ""
        raise CheckpointError(
            f"{where}: embed.weight has {rows_in_checkpoint} rows but the vocabulary {vocab.source} has {len(vocab)} "
            f"words{hint}: give the vocabulary the model was trained with (config key vocab_path)"
        )


class CaptionEncoder:
    """Tokenise and map captions to ids padded with <pad> (= 0, as the originals' collate_fn)."""

    def __init__(self, vocab: Vocabulary | None, options: Mapping[str, Any], *, model_name: str) -> None:
        self.vocab = vocab if vocab is not None else Vocabulary.from_words([], source="specials only")
        self.tokenizer = CaptionTokenizer(options["tokenizer"], options["lowercase"])
        self.max_words = int(options["max_words"])
        self.model_name = model_name

    def __call__(self, captions: Sequence[str], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise DataFormatError(f"{self.model_name}: encode_texts takes a list of caption strings")
        ids = encode_captions(captions, self.vocab, self.tokenizer)
        lengths = [len(x) for x in ids]
        longest = max(lengths, default=0)
        if longest > self.max_words:
            j = lengths.index(longest)
            raise ConfigError(
                f"{self.model_name}: caption {j} has {longest} tokens with <start>/<end> ({captions[j][:60]!r}...), "
                "more "
                f"than max_words={self.max_words}, the fixed length text features are padded to; raise it, e.g. "
                f"config={{'max_words': {longest}}}"
            )
        batch = torch.zeros(len(ids), max(longest, 1), dtype=torch.long)
        for row, seq in enumerate(ids):
            batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return batch.to(device), torch.tensor(lengths, dtype=torch.long)
