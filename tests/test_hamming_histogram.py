"""The Hamming histogram path (fico_registry.evaluator.hamming) gives exactly what the sort path gives.

Both paths feed the same functions of fico_registry.evaluator.metrics, so equal reports mean equal rank
statistics: checked on whole reports (every tie policy and AP variant, uneven captions, widths
16..2048, packed and unpacked codes, with and without labels, one-pass and query-block
histograms, numba kernels and the numpy / torch path), on the tie groups themselves against the
sort path's, and for top-k against brute force.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fico_registry import evaluate_embeddings
from fico_registry.errors import OptionError, ShapeError
from fico_registry.evaluator import engine, hamming, hamming_kernels

TIES = ("expected", "optimistic", "pessimistic")
KERNELS = ["numpy"] + (["numba"] if hamming_kernels.kernels() is not None else [])


@pytest.fixture(params=KERNELS)
def kernel(request, monkeypatch):
    """Run with the numba kernels (when installed) and with the numpy / torch path."""
    if request.param == "numpy":
        monkeypatch.setenv("FICO_HAMMING_KERNEL", "numpy")
    return request.param


def _codes(seed: int, bits: int, n_img: int = 60, noise: float = 0.3, n_classes: int = 12):
    rng = np.random.default_rng(seed)
    c2i = np.repeat(np.arange(n_img), rng.integers(1, 7, n_img))  # uneven captions per image
    img = rng.integers(0, 2, (n_img, bits)).astype(np.int8)
    txt = img[c2i] ^ (rng.random((len(c2i), bits)) < noise).astype(np.int8)
    labels = (rng.random((n_img, n_classes)) < 0.2).astype(np.uint8)
    return img, txt, c2i, labels


def _both_paths(monkeypatch, *args, **kwargs):
    kwargs = {"measure": "hamming", "device": "cpu", "progress": False, **kwargs}
    with monkeypatch.context() as m:
        m.setenv(hamming.PATH_ENV, "sort")
        want = evaluate_embeddings(*args, **kwargs)
    got = evaluate_embeddings(*args, **kwargs)
    return got, want


def _assert_same(got, want) -> None:
    g, w = got.to_dict(), want.to_dict()
    for level in ("instance", "category"):
        assert (g[level] is None) == (w[level] is None)
        for direction in ("i2t", "t2i") if w[level] else ():
            assert g[level][direction].keys() == w[level][direction].keys()
            for key, value in w[level][direction].items():
                if value is None:
                    assert g[level][direction][key] is None, (level, direction, key)
                    continue
                np.testing.assert_allclose(
                    g[level][direction][key], value, rtol=0, atol=1e-12, err_msg=f"{level} {direction} {key}"
                )
    for direction in ("i2t", "t2i"):
        a, b = got.per_query[direction], want.per_query[direction]
        for name in ("g", "t", "p", "relevant"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"{direction} {name}")


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("variant", ["fico", "apk", "dcmh"])
def test_every_tie_policy_and_variant(kernel, monkeypatch, ties, variant):
    img, txt, c2i, labels = _codes(0, 16)  # 17 distances for ~200 captions: ties everywhere
    got, want = _both_paths(
        monkeypatch, img, txt, c2i, labels, ties=ties, map_variant=variant, map_ks=(1, 5, 50, 10_000, None)
    )
    _assert_same(got, want)


@pytest.mark.parametrize("bits", [16, 20, 24, 64, 72, 256, 2048])
def test_widths_and_formats(kernel, monkeypatch, bits):
    img, txt, c2i, labels = _codes(bits, bits, n_img=30, noise=0.2)
    for fmt in ("unpacked", "signed", "packed"):
        if fmt == "signed":
            a, b, kw = 2 * img - 1, 2 * txt - 1, {}
        elif fmt == "packed":
            a, b, kw = np.packbits(img.astype(bool), 1), np.packbits(txt.astype(bool), 1), {"bits": bits}
        else:
            a, b, kw = img, txt, {}
        _assert_same(*_both_paths(monkeypatch, a, b, c2i, labels, **kw))


@pytest.mark.parametrize("map_ks", [(5,), (10, 100), (None,), ()])
def test_protocol_subsets_and_no_labels(kernel, monkeypatch, map_ks):
    img, txt, c2i, labels = _codes(3, 32)
    _assert_same(*_both_paths(monkeypatch, img, txt, c2i, labels, map_ks=map_ks, recall_ks=(1, 3, 1000)))
    _assert_same(*_both_paths(monkeypatch, img, txt, c2i, None, map_ks=map_ks))


@pytest.mark.parametrize("budget", ["8KB", "64KB"])
def test_histograms_in_query_blocks_under_a_small_budget(kernel, monkeypatch, budget):
    """A budget too small for all histograms at once: each direction in query blocks, same report."""
    img, txt, c2i, labels = _codes(5, 64, n_img=80)
    got = evaluate_embeddings(
        img, txt, c2i, labels, measure="hamming", device="cpu", progress=False, memory_budget=budget
    )
    _, want = _both_paths(monkeypatch, img, txt, c2i, labels)
    _assert_same(got, want)


def test_small_budget_equals_the_sort_paths_candidate_blocks(kernel, monkeypatch):
    """At 8 KB the sort path splits every row into candidate blocks (top-k protocol): same report."""
    img, txt, c2i, labels = _codes(6, 8, n_img=40, noise=0.2)  # 8-bit codes: ties straddle the blocks
    _assert_same(*_both_paths(monkeypatch, img, txt, c2i, labels, map_ks=(5, 30), memory_budget="8KB"))


def test_groups_equal_the_sort_paths_groups():
    """Per row: the histogram's tie groups are the groups the sort path reads from sorted keys."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        b, w, bits = int(rng.integers(1, 5)), int(rng.integers(1, 40)), int(rng.integers(1, 9))
        dist = rng.integers(0, bits + 1, (b, w))
        rel = rng.random((b, w)) < rng.random()
        hist = np.zeros((b, 2 * (bits + 1)), dtype=np.int32)
        np.add.at(hist, (np.arange(b)[:, None].repeat(w, 1), 2 * dist + rel), 1)
        keys = engine._sorted_keys_with_relevance(torch.from_numpy(-dist.astype(np.int32)), torch.from_numpy(rel))
        want = engine.groups_from_sorted(keys, w)
        got = hamming.groups_from_histograms(hist, w)
        for name in ("row", "a", "n", "r", "rb", "relevant"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_sort_path_stays_available(monkeypatch):
    img, txt, c2i, labels = _codes(1, 16, n_img=10)
    called = []
    monkeypatch.setattr(
        hamming, "histogram_stats", lambda *a, **k: called.append(1) or pytest.fail("histogram path used")
    )
    monkeypatch.setenv(hamming.PATH_ENV, "sort")
    evaluate_embeddings(img, txt, c2i, labels, measure="hamming", device="cpu", progress=False)
    assert not called


def _brute_topk(q: np.ndarray, db: np.ndarray, k: int):
    dist = np.unpackbits(q[:, None] ^ db[None], axis=2).sum(2)
    order = np.lexsort((np.broadcast_to(np.arange(len(db)), dist.shape), dist), axis=1)[:, :k]
    return np.take_along_axis(dist, order, 1), order


@pytest.mark.parametrize("n_bytes", [2, 8, 9, 256])
def test_topk_equals_brute_force(kernel, n_bytes):
    rng = np.random.default_rng(n_bytes)
    q = rng.integers(0, 256, (23, n_bytes), dtype=np.uint8)
    db = rng.integers(0, 256, (1500, n_bytes), dtype=np.uint8)
    db[10:400] = db[9]  # a wide tie
    for k in (1, 7, 300, 1500):
        want_d, want_i = _brute_topk(q, db, k)
        got_d, got_i = hamming._topk_blocks(q, db, k) if kernel == "numpy" else hamming.hamming_topk(q, db, k)
        np.testing.assert_array_equal(got_d, want_d)
        np.testing.assert_array_equal(got_i, want_i)  # ties by index
        if kernel == "numpy":  # the public entry point (faiss when installed): same distances
            np.testing.assert_array_equal(hamming.hamming_topk(q, db, k)[0], want_d)


def test_topk_rejects_bad_input():
    codes = np.zeros((3, 8), dtype=np.uint8)
    with pytest.raises(OptionError, match="k must lie"):
        hamming.hamming_topk(codes, codes, 4)
    with pytest.raises(ShapeError, match="packed uint8"):
        hamming.hamming_topk(codes, np.zeros((3, 4), dtype=np.uint8), 1)
    with pytest.raises(ShapeError, match="packed uint8"):
        hamming.hamming_topk(codes.astype(np.int64), codes, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bits", [64, 2048])
def test_cuda_histograms_equal_cpu(bits):
    img, txt, c2i, labels = _codes(11, bits)
    kw = {"measure": "hamming", "progress": False, "map_ks": (10, 100, None)}
    cpu = evaluate_embeddings(img, txt, c2i, labels, device="cpu", **kw)
    gpu = evaluate_embeddings(img, txt, c2i, labels, device="cuda", **kw)
    _assert_same(gpu, cpu)
