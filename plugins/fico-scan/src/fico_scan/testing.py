"""Test oracles and fixtures in SCAN's original formats, for fico-scan's and fico-imram's tests.

IMRAM's code is built on SCAN's: the same func_attention, the same vocabulary JSON, the same
region features. Both plugins' tests check against the transcriptions here, written from the
original code and nothing else: this module imports nothing from fico_scan, so it does not share
a bug with the code it checks. It imports torch and numpy; only tests import it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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


def write_original_checkpoint(
    folder: Path,
    base_opt: dict[str, Any],
    checkpoint: Callable[[dict[str, Any], torch.Generator], dict[str, Any]],
    *,
    words: list[str] = WORDS,
    name: str = "model_best.pth.tar",
    seed: int = 0,
    vocab: bool = True,
    **overrides: Any,
) -> Path:
    """folder/name (+ {data_name}_vocab.json beside it when `vocab`) as the original saves it.

    The opt is base_opt with a small architecture by default (embed 8, word_dim 6), the overrides,
    and the vocab_size of `words`; checkpoint(opt, generator seeded with `seed`) builds what is saved.
    """
    folder.mkdir(parents=True, exist_ok=True)
    opt = {**base_opt, "embed_size": 8, "word_dim": 6, **overrides}
    opt["vocab_size"] = len(SPECIALS) + len(words)
    torch.save(checkpoint(opt, torch.Generator().manual_seed(seed)), folder / name)
    if vocab:
        write_vocab_json(folder / f"{opt['data_name']}_vocab.json", words)
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


def check_against_reference(
    model_name: str,
    config: dict[str, Any],
    captions: list[str],
    reference: Callable[[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]], torch.Tensor],
) -> None:
    """`score` of 3 images x the captions (the tiny config + config) against reference(encoder, images,
    texts), a float64 per-pair transcription of the original: to 1e-5 in float32, 1e-10 in float64."""
    from fico_registry import load_model

    dtype = config["score_dtype"]
    model = load_model(model_name, config={**tiny_config(model_name), **config}, device="cpu")
    images = model.encode_images(regions(3))
    texts = model.encode_texts(captions)
    got = model.score(images, texts)
    assert got.dtype == getattr(torch, dtype) and got.shape == (3, len(captions))
    want = reference(model.encoder, images, texts)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5 if dtype == "float32" else 1e-10)


def check_any_block_split(model: Any, n_images: int, captions: list[str], *, seed: int, rng_seed: int) -> None:
    """`score` of any sub-block of n_images x the captions equals that block of the whole matrix (1e-6)."""
    images = model.encode_images(regions(n_images, seed=seed))
    texts = model.encode_texts(captions)
    full = model.score(images, texts)
    rng = np.random.default_rng(rng_seed)
    for _ in range(4):
        i0, i1 = sorted(rng.choice(n_images + 1, 2, replace=False))
        t0, t1 = sorted(rng.choice(len(captions) + 1, 2, replace=False))
        block = model.score({k: v[i0:i1] for k, v in images.items()}, {k: v[t0:t1] for k, v in texts.items()})
        torch.testing.assert_close(block, full[i0:i1, t0:t1], rtol=0, atol=1e-6)


def synthetic_corpora(root: Path, n_train_images: int) -> tuple[Any, Any]:
    """Synthetic train (n_train_images) and val (8 images) corpora under root, for the recipes' tests."""
    import fico_registry

    train = fico_registry.data.synthetic(n_images=n_train_images, split="train", root=root / "train")
    val = fico_registry.data.synthetic(n_images=8, split="val", root=root / "val")
    return train, val


def check_scores_like_best_validation(model: Any, val: Any, record: dict[str, Any]) -> None:
    """A trained run's checkpoint, reloaded, gives the evaluator the rsum its best epoch validated with."""
    import pytest

    import fico_registry

    report = fico_registry.evaluate(model, val, cache=False, device="cpu")
    assert 100 * sum(report.instance[d][k] for d in ("i2t", "t2i") for k in ("R@1", "R@5", "R@10")) == pytest.approx(
        record["history"][record["best_epoch"] - 1]["val_rsum"]
    )


def train_straight_and_resumed(
    train: Callable[..., dict[str, Any]], root: Path, **options: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The records of train(root / "straight", epochs=2) and of a run of 1 epoch resumed to 2 (root / "resumed"),
    which must run only the missing epoch."""
    straight = train(root / "straight", epochs=2, **options)
    train(root / "resumed", epochs=1, **options)
    resumed = train(root / "resumed", epochs=2, **options)
    assert resumed["epochs_run"] == 1
    return straight, resumed


def tiny_config(model: str) -> dict[str, Any]:
    """The model card's "tiny" config (random weights, small dimensions)."""
    from fico_registry.plugin_api.registry import get_model_spec

    return dict(get_model_spec(model).configs["tiny"])
