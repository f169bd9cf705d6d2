"""Fixtures in ADV's original formats: vocab.txt files and `.pth.tar` checkpoints."""

from __future__ import annotations

import argparse
import os
import string
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = [
    "a",
    "man",
    "woman",
    "in",
    "red",
    "shirt",
    "is",
    "riding",
    "bike",
    "down",
    "the",
    "street",
    "two",
    "dogs",
    "play",
    "snow",
    "one",
    "brown",
    "other",
    "white",
    "cafe",
    "owner",
    "special",
    "creme",
    "each",
    "very",
    "long",
    "caption",
    "that",
    "of",
    "with",
    "on",
    "and",
    "for",
    "un",
    "##known",
    "##s",
    "##ing",
    "##ed",
    "##ly",
    "##er",
]


def write_vocab(path: Path, size: int | None = None) -> Path:
    """A BERT-style vocab.txt: specials, [unused*], characters, ## pieces, a few words (padded to `size`)."""
    chars = string.ascii_lowercase + string.digits + "".join(c for c in map(chr, range(33, 127)) if not c.isalnum())
    tokens = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, "é", "—"]
    tokens += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    tokens += [w for w in WORDS if w not in tokens]
    n = 1
    while size is not None and len(tokens) < size:
        tokens.append(f"[unused{n}]")
        n += 1
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def tiny_config(name: str, **overrides) -> dict:
    from fico_registry.plugin_api.registry import get_model_spec

    return {**get_model_spec(name).configs["tiny"], **overrides}


def original_checkpoint(encoder, path: Path, *, legacy: bool = False, concept: bool = True, **opt_overrides) -> Path:
    """Save `encoder`'s weights the way train_reranking.py does."""
    import torch

    cfg = encoder.config
    opt = argparse.Namespace(
        model_name="rerank_model",
        final_dims=cfg.final_dims,
        img_dim=cfg.img_dim,
        max_words=cfg.max_words,
        txt_stru="cnn",
        trans_cfg="t_cfg.json",
        bert_path="data/bert_ckpt/uncased_L-12_H-768_A-12/",
        vocab_file="data/bert_ckpt/uncased_L-12_H-768_A-12/vocab.txt",
        do_lower_case=True,
        need_concept_label=int(concept),
        concept_num=7,
        margin=0.2,
        learning_rate=0.0001,
    )
    for key, value in opt_overrides.items():
        setattr(opt, key, value)
    states = [encoder.image_net.state_dict(), encoder.text_net.state_dict()]
    if concept:
        head = torch.nn.Sequential(
            torch.nn.Linear(cfg.final_dims, 4), torch.nn.ReLU(), torch.nn.Linear(4, 7), torch.nn.Sigmoid()
        )
        states.append(head.state_dict())
    state = {"epoch": 3, "model": states, "best_rsum": 412.5, "opt": opt, "Eiters": 1234}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(name="write_vocab")
def write_vocab_fixture():
    return write_vocab


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    return tiny_config


@pytest.fixture(name="original_checkpoint")
def original_checkpoint_fixture():
    return original_checkpoint


@pytest.fixture
def regions() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5, 36, 2048)).astype(np.float32)


@pytest.fixture
def captions() -> list[str]:
    return [
        "A man in a red shirt is riding a bike down the street.",
        "Two dogs play in the snow; one is brown, the other white!",
        'Café owner\'s "special" crème — 3.5$ each...',
        "a" + " very" * 40 + " long caption",
        "unknownwords AND   whitespace\tand\nnewlines",
    ]
