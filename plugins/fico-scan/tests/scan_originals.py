"""Test fixtures in SCAN's original formats, built from the published key lists and shapes.

A checkpoint is what SCAN's train.py saves: {"epoch", "model": [img_enc.state_dict(),
txt_enc.state_dict()], "best_rsum", "opt": argparse.Namespace, "Eiters"}; the vocabulary is
vocab.py's serialize_vocab JSON. Nothing here uses fico_scan's modules but fico_scan.testing (the
oracles and fixtures fico-imram's tests share).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from fico_scan.testing import SCAN_OPT, SPECIALS, WORDS, regions, write_original_checkpoint, write_vocab_json

__all__ = ["SCAN_OPT", "SPECIALS", "WORDS", "regions", "scan_shapes", "write_scan_checkpoint", "write_vocab_json"]


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


def write_scan_checkpoint(folder: Path, *, legacy_weight_g: bool = False, **options: Any) -> Path:
    """model_best.pth.tar (+ {data_name}_vocab.json beside it) with a small architecture by default;
    options as fico_scan.testing.write_original_checkpoint takes them."""

    def checkpoint(opt: dict[str, Any], g: torch.Generator) -> dict[str, Any]:
        img_shapes, txt_shapes = scan_shapes(opt, opt["vocab_size"], legacy_weight_g=legacy_weight_g)
        return {
            "epoch": 12,
            "model": [random_state(img_shapes, g), random_state(txt_shapes, g)],
            "best_rsum": 401.5,
            "opt": argparse.Namespace(**opt),
            "Eiters": 12345,
        }

    return write_original_checkpoint(folder, SCAN_OPT, checkpoint, **options)
