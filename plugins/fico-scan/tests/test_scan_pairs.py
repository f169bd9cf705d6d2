"""score_pairs: the scores of given (image, caption) pairs are score's cells for those pairs.

`score` itself is exact only up to rounding across call shapes (a pair scored alone and inside a
full matrix differ by up to ~1e-6 in float32 and ~4e-16 in float64: other paddings and BLAS
blockings), so score_pairs is held to the same bounds: 1e-6 in float32, 1e-12 in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scan_originals import regions
from test_scan_numerics import CAPTIONS, SETTINGS, _tiny

from fico_registry import load_model

ATOL = {"float32": 1e-6, "float64": 1e-12}


def _mixed_pairs(n_images: int, n_texts: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every (image, caption) pair once, shuffled so each batch mixes queries and caption lengths."""
    ii, jj = np.meshgrid(np.arange(n_images), np.arange(n_texts), indexing="ij")
    order = np.random.default_rng(seed).permutation(ii.size)
    return ii.ravel()[order], jj.ravel()[order]


def _name(s: dict) -> str:
    return f"{s['cross_attn']}-{s['raw_feature_norm']}-{s['agg_func']}"


@pytest.mark.parametrize("setting", SETTINGS, ids=_name)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_score_pairs_is_score_on_the_same_pairs(setting: dict, dtype: str) -> None:
    torch.manual_seed(0)  # the tiny weights are random: fix them
    model = load_model("scan", config={**_tiny(), **setting, "score_dtype": dtype}, device="cpu")
    images, texts = model.encode_images(regions(4)), model.encode_texts(CAPTIONS * 2)
    full = model.score(images, texts)
    ii, jj = _mixed_pairs(4, len(CAPTIONS) * 2)
    got = model.encoder.score_pairs({k: v[ii] for k, v in images.items()}, {k: v[jj] for k, v in texts.items()})
    assert got.dtype == getattr(torch, dtype) and got.shape == (len(ii),)
    torch.testing.assert_close(got, full[ii, jj], rtol=0, atol=ATOL[dtype])


def test_score_pairs_in_small_chunks_and_empty() -> None:
    torch.manual_seed(0)
    model = load_model("scan", config={**_tiny(), "score_memory_mb": 0.01}, device="cpu")  # forces many chunks
    images, texts = model.encode_images(regions(5, seed=1)), model.encode_texts(CAPTIONS * 3)
    ii, jj = _mixed_pairs(5, len(CAPTIONS) * 3, seed=1)
    got = model.encoder.score_pairs({k: v[ii] for k, v in images.items()}, {k: v[jj] for k, v in texts.items()})
    torch.testing.assert_close(got, model.score(images, texts)[ii, jj], rtol=0, atol=1e-6)
    none = np.zeros(0, dtype=np.int64)
    empty = model.encoder.score_pairs({k: v[none] for k, v in images.items()}, {k: v[none] for k, v in texts.items()})
    assert empty.shape == (0,)
