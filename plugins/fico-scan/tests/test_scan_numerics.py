"""The vectorised scorer against a per-pair transcription of SCAN's func_attention / xattn_score_*."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from fico_scan.testing import (
    CAPTIONS,
    check_against_reference,
    check_any_block_split,
    cosine_similarity,
    func_attention,
    tiny_config,
)
from scan_originals import regions

from fico_registry import load_model


def _aggregate(row: torch.Tensor, agg_func: str, lambda_lse: float) -> float:
    if agg_func == "LogSumExp":
        return float(torch.log((row * lambda_lse).exp().sum()) / lambda_lse)
    return float({"Max": row.max(), "Sum": row.sum(), "Mean": row.mean()}[agg_func])


def reference_scores(images: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor, o: dict) -> torch.Tensor:
    """xattn_score_t2i / xattn_score_i2t, one (image, caption) pair at a time, in float64."""
    images, words = images.double(), words.double()
    out = torch.zeros(len(images), len(words), dtype=torch.float64)
    for j, i in itertools.product(range(len(words)), range(len(images))):
        cap = words[j, : int(lengths[j])]
        if o["cross_attn"] == "t2i":
            weighted = func_attention(cap, images[i], o["raw_feature_norm"], o["lambda_softmax"])
            row = cosine_similarity(cap, weighted)
        else:
            weighted = func_attention(images[i], cap, o["raw_feature_norm"], o["lambda_softmax"])
            row = cosine_similarity(images[i], weighted)
        out[i, j] = _aggregate(row, o["agg_func"], o["lambda_lse"])
    return out


SETTINGS = [
    {"cross_attn": direction, "raw_feature_norm": norm, "agg_func": agg, "lambda_lse": 6.0, "lambda_softmax": smooth}
    for direction, (norm, agg, smooth) in itertools.product(
        ("t2i", "i2t"),
        [
            ("clipped_l2norm", "LogSumExp", 9.0),
            ("clipped_l2norm", "Mean", 4.0),
            ("l2norm", "Max", 9.0),
            ("softmax", "Sum", 4.0),
            ("clipped", "Mean", 4.0),
            ("no_norm", "LogSumExp", 1.0),
        ],
    )
]


@pytest.mark.parametrize(
    "setting", SETTINGS, ids=lambda s: f"{s['cross_attn']}-{s['raw_feature_norm']}-{s['agg_func']}"
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_the_per_pair_reference(setting: dict, dtype: str) -> None:
    def reference(encoder: Any, images: dict, texts: dict) -> torch.Tensor:
        return reference_scores(images["regions"], texts["words"], texts["lengths"], encoder.options)

    check_against_reference("scan", {**setting, "score_dtype": dtype}, CAPTIONS, reference)


def test_any_block_split_gives_the_same_scores() -> None:
    model = load_model("scan", config={**_tiny(), "score_memory_mb": 0.01}, device="cpu")  # forces many chunks
    check_any_block_split(model, 7, CAPTIONS * 3, seed=3, rng_seed=0)


def test_gradients_flow_through_the_scores() -> None:
    """Training uses the same scorer: it must be differentiable and finite with padded captions."""
    model = load_model("scan", config={**_tiny(), "cross_attn": "i2t"}, device="cpu")
    scorer = model.encoder.scorer
    scorer.txt_enc.requires_grad_(True)
    ids, lengths = scorer.captions(CAPTIONS, "cpu")
    words = scorer.txt_enc(ids, lengths)
    mask = torch.arange(words.shape[1])[None] < lengths[:, None]
    r = scorer.img_enc(torch.from_numpy(regions(3)))
    scorer.pair_scores(r, words, mask).sum().backward()
    grads = [p.grad for p in scorer.txt_enc.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def _tiny() -> dict:
    return tiny_config("scan")
