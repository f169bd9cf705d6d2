"""Test fixtures in IMRAM's original formats, built from the published key lists and shapes.

A checkpoint is what IMRAM's train_gpus.py saves: {"epoch", "model": nn.DataParallel(SCAN).state_dict()
(every key prefixed 'module.'), "best_rsum", "opt": argparse.Namespace}; the vocabulary is the JSON
shipped in IMRAM's vocab/ folder (SCAN's format). Nothing here uses fico_imram's modules; the fixtures
IMRAM shares with SCAN come from fico_scan.testing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from fico_scan.testing import SCAN_OPT, SPECIALS, WORDS, regions, write_original_checkpoint, write_vocab_json

__all__ = ["IMRAM_OPT", "SPECIALS", "WORDS", "imram_shapes", "regions", "write_imram_checkpoint", "write_vocab_json"]

# opts.py parse_opt() with script/tune_f30k.sh's flags: SCAN's train.py options (IMRAM's opts.py keeps
# them, with the same defaults) with IMRAM's paths and the script's agg_func, plus IMRAM's own options
IMRAM_OPT = {
    **SCAN_OPT,
    "data_path": "../../../data",
    "vocab_path": "vocab",
    "val_step": 5000,
    "logger_name": "checkpoint/f30k_scan//gpus_image_IMRAM_steps_1_softmax_9",
    "model_name": "checkpoint/f30k_scan//gpus_image_IMRAM_steps_1_softmax_9",
    "agg_func": "Mean",
    "pos_emb": False,
    "gpuid": "1,2",
    "model_mode": "image_IMRAM",
    "iteration_step": 1,
    "no_IMRAM_norm": True,
}


def imram_shapes(opt: dict[str, Any], vocab_size: int) -> dict[str, tuple[int, ...]]:
    """Published key names (without 'module.') and shapes of IMRAM's SCAN(nn.Module)."""
    e, d, w = opt["embed_size"], opt["img_dim"], opt["word_dim"]
    shapes: dict[str, tuple[int, ...]] = {"img_enc.fc_local.weight": (e, d), "img_enc.fc_local.bias": (e,)}
    shapes["txt_enc.embed.weight"] = (vocab_size, w)
    for layer in range(opt["num_layers"]):
        in_dim = w if layer == 0 else 2 * e
        for suffix in ("", "_reverse"):
            shapes[f"txt_enc.rnn.weight_ih_l{layer}{suffix}"] = (3 * e, in_dim)
            shapes[f"txt_enc.rnn.weight_hh_l{layer}{suffix}"] = (3 * e, e)
            shapes[f"txt_enc.rnn.bias_ih_l{layer}{suffix}"] = (3 * e,)
            shapes[f"txt_enc.rnn.bias_hh_l{layer}{suffix}"] = (3 * e,)
    for name in ("linear_t2i", "gate_t2i", "linear_i2t", "gate_i2t"):
        shapes[f"{name}.weight"] = (e, 2 * e)
        shapes[f"{name}.bias"] = (e,)
    return shapes


def write_imram_checkpoint(folder: Path, **options: Any) -> Path:
    """model_best.pth.tar (+ {data_name}_vocab.json beside it) with a small architecture by default;
    options as fico_scan.testing.write_original_checkpoint takes them."""

    def checkpoint(opt: dict[str, Any], g: torch.Generator) -> dict[str, Any]:
        shapes = imram_shapes(opt, opt["vocab_size"])
        model = {f"module.{k}": torch.rand(shape, generator=g) * 0.6 - 0.3 for k, shape in shapes.items()}
        return {"epoch": 7, "model": model, "best_rsum": 455.0, "opt": argparse.Namespace(**opt)}

    return write_original_checkpoint(folder, IMRAM_OPT, checkpoint, **options)
