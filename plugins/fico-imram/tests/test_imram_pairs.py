"""score_pairs: the scores of given (image, caption) pairs are score's cells for those pairs.

Held to 1e-6 in float32 and 1e-12 in float64, or to score's own consistency where that is looser:
over 15 random tiny weight draws, 3 steps of text_IMRAM without memory normalisation put `score`
of one pair and `score` of the whole matrix up to 1.1e-5 apart in float32 (3.5e-15 in float64),
and score_pairs lies exactly as far (see fico-scan's test_scan_pairs.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from imram_originals import regions
from test_imram_numerics import CAPTIONS, SETTINGS, _tiny

from fico_registry import load_model

ATOL = {"float32": 1e-6, "float64": 1e-12}


def _name(s: dict) -> str:
    return f"{s['model_mode']}-{s['iteration_step']}-{s.get('raw_feature_norm', 'clipped_l2norm')}"


@pytest.mark.parametrize("setting", SETTINGS, ids=_name)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_score_pairs_is_score_on_the_same_pairs(setting: dict, dtype: str) -> None:
    config = {**_tiny(), **setting, "score_dtype": dtype, "score_memory_mb": 0.05}  # several chunks of pairs
    torch.manual_seed(0)  # the tiny weights are random: fix them
    model = load_model("imram", config=config, device="cpu")
    images, texts = model.encode_images(regions(4)), model.encode_texts(CAPTIONS * 2)
    full = model.score(images, texts)
    ii, jj = np.meshgrid(np.arange(4), np.arange(len(CAPTIONS) * 2), indexing="ij")
    order = np.random.default_rng(0).permutation(ii.size)  # batches mix queries and caption lengths
    ii, jj = ii.ravel()[order], jj.ravel()[order]
    got = model.encoder.score_pairs({k: v[ii] for k, v in images.items()}, {k: v[jj] for k, v in texts.items()})
    assert got.dtype == getattr(torch, dtype) and got.shape == (len(ii),)

    def alone(i: int, j: int) -> torch.Tensor:
        image, text = {k: v[i : i + 1] for k, v in images.items()}, {k: v[j : j + 1] for k, v in texts.items()}
        return model.score(image, text)[0, 0]

    one = torch.stack([alone(i, j) for i, j in zip(ii, jj, strict=True)])
    own = float((one - full[ii, jj]).abs().max())  # how far score is from itself across call shapes
    torch.testing.assert_close(got, full[ii, jj], rtol=0, atol=max(ATOL[dtype], 2 * own))
