"""The vectorised IMRAM scorer against a per-pair transcription of xattn_score_Text_IMRAM / _Image_IMRAM."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from fico_scan.testing import CAPTIONS as SCAN_CAPTIONS
from fico_scan.testing import (
    check_against_reference,
    check_any_block_split,
    cosine_similarity,
    func_attention,
    l2norm,
    tiny_config,
)
from imram_originals import regions

from fico_registry import load_model

CAPTIONS = SCAN_CAPTIONS[:4]


def _gated_memory(
    linear: torch.nn.Linear, gate: torch.nn.Linear, query: torch.Tensor, attended: torch.Tensor
) -> torch.Tensor:
    both = torch.cat([query, attended], 1)
    g = torch.sigmoid(F.linear(both, gate.weight.double(), gate.bias.double()))
    return query * g + torch.tanh(F.linear(both, linear.weight.double(), linear.bias.double())) * (1 - g)


def _steps(query: torch.Tensor, context: torch.Tensor, linear, gate, o: dict) -> list[float]:
    original, sims = query, []
    for _ in range(o["iteration_step"]):
        attended = func_attention(query, context, o["raw_feature_norm"], o["lambda_softmax"])
        sims.append(float(cosine_similarity(original, attended).mean()))
        query = _gated_memory(linear, gate, query, attended)
        if not o["no_IMRAM_norm"]:
            query = l2norm(query, -1)
    return sims


def reference_scores(net, images: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor, o: dict) -> torch.Tensor:
    """Sum over steps (and directions) one (image, caption) pair at a time, in float64."""
    images, words = images.double(), words.double()
    out = torch.zeros(len(images), len(words), dtype=torch.float64)
    for j, i in itertools.product(range(len(words)), range(len(images))):
        cap = words[j, : int(lengths[j])]
        total = 0.0
        if o["model_mode"] in ("full_IMRAM", "text_IMRAM"):
            total += sum(_steps(cap, images[i], net.linear_t2i, net.gate_t2i, o))
        if o["model_mode"] in ("full_IMRAM", "image_IMRAM"):
            total += sum(_steps(images[i], cap, net.linear_i2t, net.gate_i2t, o))
        out[i, j] = total
    return out


SETTINGS = [
    {"model_mode": "image_IMRAM", "iteration_step": 1, "no_IMRAM_norm": True, "lambda_softmax": 9.0},
    {"model_mode": "text_IMRAM", "iteration_step": 3, "no_IMRAM_norm": True, "lambda_softmax": 11.0},
    {"model_mode": "full_IMRAM", "iteration_step": 3, "no_IMRAM_norm": False, "lambda_softmax": 9.0},
    {"model_mode": "image_IMRAM", "iteration_step": 2, "no_IMRAM_norm": False, "raw_feature_norm": "l2norm"},
    {"model_mode": "full_IMRAM", "iteration_step": 2, "no_IMRAM_norm": True, "raw_feature_norm": "softmax"},
    {"model_mode": "text_IMRAM", "iteration_step": 2, "no_IMRAM_norm": False, "raw_feature_norm": "clipped"},
]


@pytest.mark.parametrize(
    "setting",
    SETTINGS,
    ids=lambda s: f"{s['model_mode']}-{s['iteration_step']}-{s.get('raw_feature_norm', 'clipped_l2norm')}",
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_the_per_pair_reference(setting: dict, dtype: str) -> None:
    def reference(encoder: Any, images: dict, texts: dict) -> torch.Tensor:
        return reference_scores(encoder.net, images["regions"], texts["words"], texts["lengths"], encoder.options)

    check_against_reference("imram", {**setting, "score_dtype": dtype}, CAPTIONS, reference)


def test_any_block_split_gives_the_same_scores() -> None:
    model = load_model("imram", config={**_tiny(), **SETTINGS[2], "score_memory_mb": 0.05}, device="cpu")
    check_any_block_split(model, 6, CAPTIONS * 3, seed=2, rng_seed=1)


def test_gradients_flow_through_the_scores() -> None:
    model = load_model("imram", config={**_tiny(), **SETTINGS[2]}, device="cpu")
    encoder = model.encoder
    encoder.net.requires_grad_(True)
    ids, lengths = encoder.captions(CAPTIONS, "cpu")
    words = encoder.txt_enc(ids, lengths)
    mask = torch.arange(words.shape[1])[None] < lengths[:, None]
    encoder.pair_scores(encoder.img_enc(torch.from_numpy(regions(3))), words, mask).sum().backward()
    for name, p in encoder.net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def _tiny() -> dict:
    return tiny_config("imram")
