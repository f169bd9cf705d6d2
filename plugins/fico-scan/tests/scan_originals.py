"""Test fixtures in SCAN's original formats, built from the published key lists and shapes.

A checkpoint is what SCAN's train.py saves: {"epoch", "model": [img_enc.state_dict(),
txt_enc.state_dict()], "best_rsum", "opt": argparse.Namespace, "Eiters"}; the vocabulary is
vocab.py's serialize_vocab JSON. Nothing here uses fico_scan's modules.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

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

# train.py's argparse namespace (defaults), as pickled into every checkpoint
SCAN_OPT = {
    "data_path": "./data/",
    "data_name": "f30k_precomp",
    "vocab_path": "./vocab/",
    "margin": 0.2,
    "num_epochs": 30,
    "batch_size": 128,
    "word_dim": 300,
    "embed_size": 1024,
    "grad_clip": 2.0,
    "num_layers": 1,
    "learning_rate": 0.0002,
    "lr_update": 15,
    "workers": 10,
    "log_step": 10,
    "val_step": 500,
    "logger_name": "./runs/runX/log",
    "model_name": "./runs/runX/checkpoint",
    "resume": "",
    "max_violation": True,
    "img_dim": 2048,
    "no_imgnorm": False,
    "no_txtnorm": False,
    "raw_feature_norm": "clipped_l2norm",
    "agg_func": "LogSumExp",
    "cross_attn": "t2i",
    "precomp_enc_type": "basic",
    "bi_gru": True,
    "lambda_lse": 6.0,
    "lambda_softmax": 9.0,
}


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


def gru_keys(
    prefix: str, word_dim: int, hidden: int, num_layers: int, bidirectional: bool
) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(num_layers):
        in_dim = word_dim if layer == 0 else hidden * (2 if bidirectional else 1)
        for suffix in [""] + (["_reverse"] if bidirectional else []):
            shapes[f"{prefix}weight_ih_l{layer}{suffix}"] = (3 * hidden, in_dim)
            shapes[f"{prefix}weight_hh_l{layer}{suffix}"] = (3 * hidden, hidden)
            shapes[f"{prefix}bias_ih_l{layer}{suffix}"] = (3 * hidden,)
            shapes[f"{prefix}bias_hh_l{layer}{suffix}"] = (3 * hidden,)
    return shapes


def scan_shapes(opt: dict[str, Any], vocab_size: int, *, legacy_weight_g: bool = False) -> tuple[dict, dict]:
    """Published key names and shapes of [img_enc, txt_enc] for an opt."""
    e, d = opt["embed_size"], opt["img_dim"]
    if opt["precomp_enc_type"] == "weight_norm":
        img = {"fc.bias": (e,), "fc.weight_g": (1,) if legacy_weight_g else (), "fc.weight_v": (e, d)}
    else:
        img = {"fc.weight": (e, d), "fc.bias": (e,)}
    txt = {"embed.weight": (vocab_size, opt["word_dim"])}
    txt.update(gru_keys("rnn.", opt["word_dim"], e, opt["num_layers"], opt["bi_gru"]))
    return img, txt


def random_state(shapes: dict[str, tuple[int, ...]], generator: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for key, shape in shapes.items():
        t = torch.rand(shape, generator=generator) * 0.4 - 0.2
        if key.endswith("weight_g"):
            t = t.abs() + 1.0
        out[key] = t
    return out


def write_scan_checkpoint(
    folder: Path,
    *,
    words: list[str] = WORDS,
    name: str = "model_best.pth.tar",
    seed: int = 0,
    legacy_weight_g: bool = False,
    vocab: bool = True,
    **overrides: Any,
) -> Path:
    """model_best.pth.tar (+ {data_name}_vocab.json beside it) with a small architecture by default."""
    folder.mkdir(parents=True, exist_ok=True)
    opt = {**SCAN_OPT, "embed_size": 8, "word_dim": 6, **overrides}
    vocab_size = len(SPECIALS) + len(words)
    opt["vocab_size"] = vocab_size
    g = torch.Generator().manual_seed(seed)
    img_shapes, txt_shapes = scan_shapes(opt, vocab_size, legacy_weight_g=legacy_weight_g)
    state = {
        "epoch": 12,
        "model": [random_state(img_shapes, g), random_state(txt_shapes, g)],
        "best_rsum": 401.5,
        "opt": argparse.Namespace(**opt),
        "Eiters": 12345,
    }
    path = folder / name
    torch.save(state, path)
    if vocab:
        write_vocab_json(folder / f"{opt['data_name']}_vocab.json", words)
    return path
