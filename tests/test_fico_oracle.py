"""The evaluator against the fico-itr 1.0.0 package (the FiCo-ITR reference implementation)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

fico_itr = pytest.importorskip("fico_itr")

from fico_registry import evaluate_embeddings, evaluate_similarity  # noqa: E402


def _data(seed, n_images=40, captions=None, d=12, n_classes=7):
    rng = np.random.default_rng(seed)
    counts = np.full(n_images, 5) if captions is None else captions
    c2i = np.repeat(np.arange(n_images), counts)
    img = rng.standard_normal((n_images, d)).astype(np.float32)
    txt = (0.6 * img[c2i] + rng.standard_normal((len(c2i), d))).astype(np.float32)
    labels = (rng.random((n_images, n_classes)) < 0.3).astype(np.float32)
    return img, txt, c2i, labels


def _fico(sim_i2t, c2i, labels, sim_t2i=None, cpi=None):
    cpi = c2i.tolist() if cpi is None else cpi  # fico-itr compares its argument to "auto": a list, not an array
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        i2t, t2i = fico_itr.instance_retrieval(sim_i2t, t2i_sim=sim_t2i, captions_per_image=cpi)
        maps = {
            k: fico_itr.category_retrieval(sim_i2t, labels, k=k, sim2=sim_t2i, captions_per_image=cpi)
            for k in (10, 100, None)
        }
    return i2t, t2i, maps


def _compare(report, i2t, t2i, maps):
    for ours, theirs in ((report.instance["i2t"], i2t), (report.instance["t2i"], t2i)):
        for k in (1, 5, 10):
            assert ours[f"R@{k}"] == pytest.approx(theirs[f"R@{k}"] / 100, abs=1e-12)
        assert ours["MedR"] == pytest.approx(theirs["MedianR"])
        assert ours["MeanR"] == pytest.approx(theirs["MeanR"], abs=1e-9)
    for k, (m_i2t, m_t2i) in maps.items():
        key = "mAP@N" if k is None else f"mAP@{k}"
        assert report.category["i2t"][key] == pytest.approx(m_i2t, abs=1e-9)
        assert report.category["t2i"][key] == pytest.approx(m_t2i, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("measure", ["cosine", "inner_product"])
def test_five_captions_per_image(seed, measure):
    img, txt, c2i, labels = _data(seed)
    report = evaluate_embeddings(img, txt, c2i, labels, measure=measure, device="cpu")
    sim = fico_itr.compute_similarity(img.astype(np.float64), txt.astype(np.float64), measure)
    _compare(report, *_fico(sim, c2i, labels, cpi=5))


@pytest.mark.parametrize("seed", [3, 4])
def test_uneven_captions_per_image(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 8, size=50)  # the COCO 25,010 kind of mapping, exaggerated
    img, txt, c2i, labels = _data(seed, n_images=50, captions=counts)
    report = evaluate_embeddings(img, txt, c2i, labels, device="cpu")
    sim = fico_itr.compute_similarity(img.astype(np.float64), txt.astype(np.float64), "cosine")
    _compare(report, *_fico(sim, c2i, labels))


@pytest.mark.parametrize("seed", [5, 6])
def test_separate_t2i_matrix(seed):
    img, txt, c2i, labels = _data(seed)
    rng = np.random.default_rng(seed)
    sim_i2t = img @ txt.T
    sim_t2i = (sim_i2t + rng.standard_normal(sim_i2t.shape).astype(np.float32)).T.copy()  # differs from i2t.T
    report = evaluate_similarity(sim_i2t, c2i, t2i=sim_t2i, labels=labels, device="cpu")
    _compare(report, *_fico(sim_i2t.astype(np.float64), c2i, labels, sim_t2i=sim_t2i.astype(np.float64), cpi=5))


def test_similarity_matrix_equals_embedding_path():
    img, txt, c2i, labels = _data(8)
    a = evaluate_embeddings(img, txt, c2i, labels, measure="inner_product", device="cpu")
    b = evaluate_similarity(img @ txt.T, c2i, labels=labels, device="cpu")
    assert a.instance == b.instance
    for d in ("i2t", "t2i"):
        for key in ("mAP@10", "mAP@100", "mAP@N"):
            assert a.category[d][key] == pytest.approx(b.category[d][key], abs=1e-12)


def test_hamming_lies_within_tie_bounds_of_fico():
    # fico-itr breaks Hamming ties by its argsort; our optimistic / pessimistic bracket any order
    rng = np.random.default_rng(9)
    n_images, bits = 60, 8
    c2i = np.repeat(np.arange(n_images), 5)
    img = rng.integers(0, 2, size=(n_images, bits))
    flip = rng.random((len(c2i), bits)) < 0.2
    txt = np.where(flip, 1 - img[c2i], img[c2i])
    labels = (rng.random((n_images, 5)) < 0.3).astype(np.float32)
    sim = fico_itr.compute_similarity(img, txt, "hamming")
    _, _, maps = _fico(sim, c2i, labels, cpi=5)
    lo = evaluate_embeddings(img, txt, c2i, labels, measure="hamming", ties="pessimistic", device="cpu")
    hi = evaluate_embeddings(img, txt, c2i, labels, measure="hamming", ties="optimistic", device="cpu")
    mid = evaluate_embeddings(img, txt, c2i, labels, measure="hamming", ties="expected", device="cpu")
    for k, (m_i2t, m_t2i) in maps.items():
        key = "mAP@N" if k is None else f"mAP@{k}"
        for d, value in (("i2t", m_i2t), ("t2i", m_t2i)):
            assert lo.category[d][key] - 1e-12 <= value <= hi.category[d][key] + 1e-12
            assert lo.category[d][key] - 1e-12 <= mid.category[d][key] <= hi.category[d][key] + 1e-12
