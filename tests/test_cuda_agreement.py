"""CPU and CUDA give the same report (runs only where torch sees a GPU; skipped otherwise).

Hamming scores are integers on both devices (popcount on CPU, an exact +/-1 product on CUDA),
so those reports must be identical. Float scores may differ in the last bit between BLAS and
cuBLAS, which can reorder near-ties only: metrics agree to a small tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fico_registry import evaluate_embeddings, evaluate_similarity

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _task(seed: int = 0, n_img: int = 300, dim: int = 64):
    rng = np.random.default_rng(seed)
    c2i = np.repeat(np.arange(n_img), rng.integers(1, 6, size=n_img))
    img = rng.standard_normal((n_img, dim)).astype(np.float32)
    txt = (img[c2i] + rng.standard_normal((len(c2i), dim))).astype(np.float32)
    labels = (rng.random((n_img, 20)) < 0.15).astype(np.uint8)
    return img, txt, c2i, labels


def _numbers(report) -> dict:
    out = report.to_dict()
    return {"instance": out["instance"], "category": out["category"]}


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
def test_hamming_identical(ties):
    img, txt, c2i, labels = _task()
    codes_i, codes_t = np.sign(img[:, :32]).astype(np.int8), np.sign(txt[:, :32]).astype(np.int8)
    kwargs = {"measure": "hamming", "ties": ties, "map_ks": (10, 100, None), "progress": False}
    cpu = evaluate_embeddings(codes_i, codes_t, c2i, labels, device="cpu", **kwargs)
    gpu = evaluate_embeddings(codes_i, codes_t, c2i, labels, device="cuda", **kwargs)
    assert _numbers(cpu) == _numbers(gpu)


@pytest.mark.parametrize("map_ks", [(10, 100, None), (10, 100)])
def test_float_close(map_ks):
    img, txt, c2i, labels = _task(1)
    cpu = _numbers(evaluate_embeddings(img, txt, c2i, labels, map_ks=map_ks, device="cpu", progress=False))
    gpu = _numbers(evaluate_embeddings(img, txt, c2i, labels, map_ks=map_ks, device="cuda", progress=False))
    for level in ("instance", "category"):
        for direction in ("i2t", "t2i"):
            for key, value in cpu[level][direction].items():
                assert gpu[level][direction][key] == pytest.approx(value, abs=2e-3), (level, direction, key)


def test_similarity_identical_on_integer_scores():
    rng = np.random.default_rng(2)
    img, _, c2i, labels = _task(2)
    i2t = rng.integers(0, 8, size=(len(img), len(c2i))).astype(np.float32)  # exact ties everywhere
    cpu = evaluate_similarity(i2t, c2i, labels=labels, device="cpu", progress=False)
    gpu = evaluate_similarity(i2t, c2i, labels=labels, device="cuda", progress=False)
    assert _numbers(cpu) == _numbers(gpu)
