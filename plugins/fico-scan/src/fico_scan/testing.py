"""Test oracles and fixtures in SCAN's original formats, for fico-scan's and fico-imram's tests.

IMRAM's code is built on SCAN's: the same func_attention, the same vocabulary JSON, the same
region features. Both plugins' tests check against the transcriptions here, written from the
original code and nothing else: this module imports nothing from fico_scan, so it does not share
a bug with the code it checks. It imports torch and numpy; only tests import it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

SPECIALS = ["<pad>", "<start>", "<end>", "<unk>"]
WORDS = [
    "a",
    "red",
    "circle",
    "above",
    "small",
    "blue",
    "square",
    "two",
    "green",
    "triangles",
    "next",
    "to",
    "yellow",
    "star",
]
CAPTIONS = [
    "a red circle above a small blue square",
    "two green triangles",
    "a yellow star next to two red circles above the blue square in the corner",
    "square",
    "three small orange circles on a grey background",
]


def regions(n: int = 4, seed: int = 0) -> np.ndarray:
    """Bottom-up-attention-like features: (n, 36, 2048), non-negative."""
    return np.random.default_rng(seed).gamma(0.5, 1.0, size=(n, 36, 2048)).astype(np.float32)


def write_vocab_json(path: Path, words: list[str] = WORDS) -> Path:
    """vocab.py serialize_vocab: {"word2idx": ..., "idx2word": {"0": ...}, "idx": N}."""
    tokens = SPECIALS + list(words)
    data = {
        "word2idx": {w: i for i, w in enumerate(tokens)},
        "idx2word": {str(i): w for i, w in enumerate(tokens)},
        "idx": len(tokens),
    }
    path.write_text(json.dumps(data))
    return path


def small_opt(base: dict[str, Any], words: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """An original opt with a small architecture by default (embed 8, word_dim 6) and the vocab_size of `words`."""
    opt = {**base, "embed_size": 8, "word_dim": 6, **overrides}
    opt["vocab_size"] = len(SPECIALS) + len(words)
    return opt


def save_original(checkpoint: dict[str, Any], folder: Path, name: str, *, words: list[str], vocab: bool) -> Path:
    """folder/name as the original saves it (+ {data_name}_vocab.json beside it when `vocab`)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, folder / name)
    if vocab:
        write_vocab_json(folder / f"{checkpoint['opt'].data_name}_vocab.json", words)
    return folder / name


# SCAN's model.py, one pair at a time (IMRAM's model.py has the same functions)
def l2norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + 1e-8)


def func_attention(query: torch.Tensor, context: torch.Tensor, raw_feature_norm: str, smooth: float) -> torch.Tensor:
    """One pair: query (queryL, d), context (sourceL, d) -> weighted context (queryL, d)."""
    attn = context @ query.T  # (sourceL, queryL)
    if raw_feature_norm == "softmax":
        attn = torch.softmax(attn, dim=1)
    elif raw_feature_norm == "l2norm":
        attn = l2norm(attn, 1)
    elif raw_feature_norm == "clipped_l2norm":
        attn = l2norm(F.leaky_relu(attn, 0.1), 1)
    elif raw_feature_norm == "clipped":
        attn = F.leaky_relu(attn, 0.1)
    attn = torch.softmax(attn.T * smooth, dim=1)  # (queryL, sourceL): over the context tokens
    return attn @ context


def cosine_similarity(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    return (x1 * x2).sum(1) / (x1.norm(dim=1) * x2.norm(dim=1)).clamp(min=1e-8)


def tiny_config(model: str) -> dict[str, Any]:
    """The model card's "tiny" config (random weights, small dimensions)."""
    from fico_registry.plugin_api.registry import get_model_spec

    return dict(get_model_spec(model).configs["tiny"])
