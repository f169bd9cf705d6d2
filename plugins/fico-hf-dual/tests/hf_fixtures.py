"""Checkpoint folders in the hub layout: save_pretrained weights + config + preprocessor_config.json,
and tokenizer files in each tokenizer's ORIGINAL format (not transformers' tokenizer.json)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from fico_hf_dual.tiny_vocab import bert_vocab, clip_vocab

from fico_registry.plugin_api.testing import SAMPLE_CAPTIONS


def write_clip_bpe(folder: Path) -> None:
    """vocab.json + merges.txt, as openai/clip-* ship them (no merges: bytes only)."""
    (folder / "vocab.json").write_text(json.dumps(clip_vocab()))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def write_bert_wordpiece(folder: Path) -> None:
    """vocab.txt, one token per line in id order, as kakaobrain/align-base ships it."""
    vocab = bert_vocab()
    (folder / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.__getitem__)) + "\n")


def write_xlmr_sentencepiece(folder: Path, vocab_size: int = 48) -> None:
    """sentencepiece.bpe.model (a unigram model despite the name), as XLM-R / BAAI/AltCLIP ship it."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SAMPLE_CAPTIONS * 20),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (folder / "sentencepiece.bpe.model").write_bytes(model.getvalue())


TOKENIZER_WRITERS = {
    "hf-clip": write_clip_bpe,
    "hf-groupvit": write_clip_bpe,
    "hf-align": write_bert_wordpiece,
    "hf-altclip": write_xlmr_sentencepiece,
}


def write_checkpoint_folder(model, folder: Path) -> Path:
    """What a hub repo holds: the loaded tiny model's weights, config and image processor, plus tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    model.encoder.model.save_pretrained(folder)
    model.encoder.image_processor.save_pretrained(folder)
    TOKENIZER_WRITERS[model.name](folder)
    return folder
