"""Test helpers that write files in the ORIGINAL formats: beit3.spm-like sentencepiece models and
unilm-layout checkpoints. (A uniquely named module, so that other plugins' tests can share a session.)"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch
from fico_beit3.config import Beit3Config
from fico_beit3.model import random_model
from fico_beit3.plugin import TINY

# Not the sentences of the built-in tiny model, so a test can tell which one was used.
SPM_SENTENCES = (
    "a man riding a wave on top of a surfboard",
    "a giraffe standing next to a tall tree",
    "two people sitting on a bench in the snow",
    "a kitchen with a stove and a refrigerator",
    "a cat sleeping on a laptop keyboard",
    "a group of children playing football on the grass",
)


def write_spm(path: Path, vocab_size: int = 50) -> Path:
    """A unigram sentencepiece model file, trained offline (<unk>=0, <s>=1, </s>=2 like beit3.spm)."""
    import sentencepiece

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_SENTENCES),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="unigram",
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    path.write_bytes(buffer.getvalue())
    return path


def tiny_file_config(spm: Path) -> dict:
    """The tiny architecture reading its captions with a sentencepiece file (no built-in model)."""
    return {**TINY, "builtin_spm": None, "sentencepiece_model": str(spm)}


def perturbed_tiny_network(seed: int = 1):
    """A tiny BEiT3ForRetrieval whose every weight is random (LayerNorms, CLS token, positions too)."""
    network = random_model(Beit3Config.from_dict(TINY))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in network.parameters():
            param.add_(0.2 * torch.randn(param.shape, generator=generator))
    return network.eval()


def save_unilm(state: dict, path: Path, *, key: str | None = "model") -> Path:
    """What unilm's utils.save_model writes (minus the optimizer state's bulk)."""
    if key is None:
        torch.save(state, path)
        return path
    args = argparse.Namespace(
        model="beit3_base_patch16_384",
        input_size=384,
        task="coco_retrieval",
        num_max_bpe_tokens=64,
        sentencepiece_model="beit3.spm",
    )
    torch.save({key: state, "epoch": 14, "args": args, "scaler": {"scale": 65536.0}}, path)
    return path
