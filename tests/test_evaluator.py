"""Evaluator behaviour: input checks, block streaming, measures, code formats, report shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fico_registry import evaluate_embeddings, evaluate_similarity
from fico_registry.errors import (
    DTypeError,
    EmptyInputError,
    LabelError,
    MappingError,
    MemoryBudgetError,
    NonBinaryCodesError,
    NonFiniteError,
    OptionError,
    ShapeError,
)


def _data(seed=0, n_images=30, d=8, n_classes=5, cpi=5):
    rng = np.random.default_rng(seed)
    c2i = np.repeat(np.arange(n_images), cpi)
    img = rng.standard_normal((n_images, d)).astype(np.float32)
    txt = (img[c2i] + rng.standard_normal((len(c2i), d))).astype(np.float32)
    labels = (rng.random((n_images, n_classes)) < 0.3).astype(np.uint8)
    return img, txt, c2i, labels


def test_report_layout_and_json_round_trip(tmp_path):
    img, txt, c2i, labels = _data()
    report = evaluate_embeddings(img, txt, c2i, labels, device="cpu")
    data = report.to_dict()
    assert set(data["instance"]) == {"i2t", "t2i"}
    assert set(data["instance"]["i2t"]) == {"R@1", "R@5", "R@10", "MedR", "MeanR"}
    assert {"mAP@10", "mAP@100", "mAP@N", "PR11"} <= set(data["category"]["t2i"])
    assert len(data["category"]["i2t"]["PR11"]) == 11
    assert data["settings"]["measure"] == "cosine" and data["settings"]["ties"] == "expected"
    assert data["settings"]["map_variant"] == "fico" and data["settings"]["n_texts"] == len(c2i)
    for direction in ("i2t", "t2i"):
        for key, value in data["instance"][direction].items():
            assert (0 <= value <= 1) if key.startswith("R@") else value >= 1
    path = tmp_path / "r.json"
    report.to_json(path)
    assert json.loads(path.read_text())["instance"] == json.loads(json.dumps(data["instance"]))


def test_keys_follow_requested_ks():
    img, txt, c2i, labels = _data()
    report = evaluate_embeddings(img, txt, c2i, labels, recall_ks=(2, 3), map_ks=(7,), device="cpu")
    assert set(report.instance["i2t"]) == {"R@2", "R@3", "MedR", "MeanR"}
    assert set(report.category["i2t"]) >= {"mAP@7"} and "mAP@N" not in report.category["i2t"]


def test_no_labels_means_no_category_block():
    img, txt, c2i, _ = _data()
    report = evaluate_embeddings(img, txt, c2i, device="cpu")
    assert report.category is None and report.to_dict()["category"] is None


@pytest.mark.parametrize("measure", ["cosine", "inner_product", "euclidean"])
def test_tiny_memory_budget_streams_blocks_with_identical_results(measure):
    img, txt, c2i, labels = _data(1, n_images=40)
    whole = evaluate_embeddings(img, txt, c2i, labels, measure=measure, device="cpu")
    # about three query rows per block
    streamed = evaluate_embeddings(img, txt, c2i, labels, measure=measure, device="cpu", memory_budget=3 * 200 * 90)
    assert streamed.instance == whole.instance
    assert streamed.to_dict()["category"] == whole.to_dict()["category"]


def test_budget_too_small_for_one_row_is_a_clear_error():
    img, txt, c2i, labels = _data()
    with pytest.raises(MemoryBudgetError, match="memory_budget"):
        evaluate_embeddings(img, txt, c2i, labels, device="cpu", memory_budget=100)


def test_euclidean_ranks_like_distance():
    img, txt, c2i, labels = _data(2)
    dist = ((img[:, None, :] - txt[None, :, :]) ** 2).sum(-1)
    a = evaluate_embeddings(img, txt, c2i, labels, measure="euclidean", device="cpu")
    b = evaluate_similarity(-dist.astype(np.float64), c2i, labels=labels, device="cpu")
    for d in ("i2t", "t2i"):
        assert a.instance[d] == pytest.approx(b.instance[d])


def test_maxsim_matches_explicit_matrix():
    rng = np.random.default_rng(3)
    n_images, m, d = 12, 4, 6
    c2i = np.repeat(np.arange(n_images), 3)
    img = rng.standard_normal((n_images, m, d)).astype(np.float32)
    txt = rng.standard_normal((len(c2i), d)).astype(np.float32)
    labels = (rng.random((n_images, 4)) < 0.4).astype(np.uint8)
    sim = np.einsum("imd,td->imt", img, txt).max(axis=1)
    a = evaluate_embeddings(img, txt, c2i, labels, measure="maxsim", device="cpu")
    b = evaluate_similarity(sim, c2i, labels=labels, device="cpu")
    for d in ("i2t", "t2i"):
        assert a.instance[d] == pytest.approx(b.instance[d])
    assert a.category["i2t"]["mAP@N"] == pytest.approx(b.category["i2t"]["mAP@N"])


def test_hamming_code_formats_agree():
    rng = np.random.default_rng(4)
    n_images, bits = 20, 24
    c2i = np.repeat(np.arange(n_images), 2)
    img01 = rng.integers(0, 2, (n_images, bits))
    txt01 = np.where(rng.random((len(c2i), bits)) < 0.15, 1 - img01[c2i], img01[c2i])
    labels = (rng.random((n_images, 3)) < 0.5).astype(np.uint8)
    reports = [
        evaluate_embeddings(img01.astype(np.int8), txt01.astype(np.int8), c2i, labels, measure="hamming", device="cpu"),
        evaluate_embeddings(2.0 * img01 - 1, 2.0 * txt01 - 1, c2i, labels, measure="hamming", device="cpu"),
        evaluate_embeddings(img01.astype(bool), txt01.astype(bool), c2i, labels, measure="hamming", device="cpu"),
        evaluate_embeddings(
            np.packbits(img01.astype(bool), 1),
            np.packbits(txt01.astype(bool), 1),
            c2i,
            labels,
            measure="hamming",
            bits=bits,
            device="cpu",
        ),
    ]
    dist = (img01[:, None, :] != txt01[None, :, :]).sum(-1)
    reference = evaluate_similarity(-dist, c2i, labels=labels, device="cpu")
    for report in reports:
        assert report.instance == reference.instance
        assert report.to_dict()["category"] == reference.to_dict()["category"]


def test_inputs_are_never_modified():
    img, txt, c2i, labels = _data(9)
    sim = img @ txt.T
    copies = [x.copy() for x in (img, txt, sim, labels)]
    evaluate_embeddings(img, txt, c2i, labels, device="cpu")
    evaluate_similarity(sim, c2i, labels=labels, device="cpu")
    evaluate_similarity(torch.from_numpy(sim), c2i, t2i=torch.from_numpy(sim.T.copy()), labels=labels, device="cpu")
    for original, now in zip(copies, (img, txt, sim, labels), strict=False):
        assert np.array_equal(original, now)


def test_memmap_similarity(tmp_path):
    img, txt, c2i, labels = _data(5)
    path = tmp_path / "sim.npy"
    np.save(path, img @ txt.T)
    mm = np.load(path, mmap_mode="r")
    a = evaluate_similarity(mm, c2i, labels=labels, device="cpu", memory_budget=50_000)
    b = evaluate_similarity(img @ txt.T, c2i, labels=labels, device="cpu")
    assert a.instance == b.instance


def test_torch_and_low_precision_inputs():
    img, txt, c2i, labels = _data(6)
    a = evaluate_embeddings(torch.from_numpy(img).half(), torch.from_numpy(txt).half(), c2i, labels, device="cpu")
    b = evaluate_embeddings(
        img.astype(np.float16).astype(np.float32), txt.astype(np.float16).astype(np.float32), c2i, labels, device="cpu"
    )
    assert a.instance == b.instance
    assert a.settings["input_dtype"] == "float16"


def test_duplicated_embeddings_are_pure_ties():
    # the FiCo-ITR scaling method duplicates the test set: each item appears twice, exactly tied
    img, txt, c2i, labels = _data(7, n_images=10)
    img2, txt2 = np.concatenate([img, img]), np.concatenate([txt, txt])
    c2i2 = np.concatenate([c2i, c2i + 10])
    labels2 = np.concatenate([labels, labels])
    opt = evaluate_embeddings(img2, txt2, c2i2, labels2, ties="optimistic", device="cpu")
    pes = evaluate_embeddings(img2, txt2, c2i2, labels2, ties="pessimistic", device="cpu")
    exp = evaluate_embeddings(img2, txt2, c2i2, labels2, ties="expected", device="cpu")
    assert pes.instance["t2i"]["R@1"] < exp.instance["t2i"]["R@1"] < opt.instance["t2i"]["R@1"]
    # a caption's own image and its copy tie: the expected R@1 is exactly half of the optimistic
    assert exp.instance["t2i"]["R@1"] == pytest.approx(opt.instance["t2i"]["R@1"] / 2)


# -- bad input gets a typed error that says what to fix --------------------------------------------


def test_shape_errors():
    img, txt, c2i, _labels = _data()
    with pytest.raises(ShapeError, match="width"):
        evaluate_embeddings(img, txt[:, :4], c2i)
    with pytest.raises(ShapeError, match="2-d"):
        evaluate_embeddings(img[None], txt, c2i)
    with pytest.raises(ShapeError, match="t2i must be"):
        evaluate_similarity(img @ txt.T, c2i, t2i=img @ txt.T)


def test_dtype_and_finiteness_errors():
    img, txt, c2i, _labels = _data()
    with pytest.raises(DTypeError, match="hamming"):
        evaluate_embeddings(img.astype(np.int64), txt.astype(np.int64), c2i)
    bad = img.copy()
    bad[3, 2] = np.nan
    with pytest.raises(NonFiniteError, match="NaN"):
        evaluate_embeddings(bad, txt, c2i)
    sim = img @ txt.T
    sim[1, 1] = np.inf
    with pytest.raises(NonFiniteError, match="queries"):
        evaluate_similarity(sim, c2i)
    with pytest.raises(EmptyInputError):
        evaluate_embeddings(img[:0], txt, c2i)


def test_mapping_errors():
    img, txt, c2i, _labels = _data()
    with pytest.raises(MappingError, match="entries"):
        evaluate_embeddings(img, txt, c2i[:-1])
    out_of_range = c2i.copy()
    out_of_range[0] = 99
    with pytest.raises(MappingError, match="lie in"):
        evaluate_embeddings(img, txt, out_of_range)
    orphan = c2i.copy()
    orphan[orphan == 4] = 5
    with pytest.raises(MappingError, match="no caption"):
        evaluate_embeddings(img, txt, orphan)
    with pytest.raises(MappingError, match="integer"):
        evaluate_embeddings(img, txt, c2i.astype(np.float32))


def test_label_errors():
    img, txt, c2i, labels = _data()
    with pytest.raises(LabelError, match="rows"):
        evaluate_embeddings(img, txt, c2i, labels[:-1])
    with pytest.raises(LabelError, match="multi-hot"):
        evaluate_embeddings(img, txt, c2i, labels * 2)
    with pytest.raises(LabelError, match="multi-hot"):
        evaluate_embeddings(img, txt, c2i, labels[:, 0])


def test_code_errors():
    img, txt, c2i, _ = _data()
    with pytest.raises(NonBinaryCodesError, match="sign"):
        evaluate_embeddings(img, txt, c2i, measure="hamming")
    codes = (img > 0).astype(np.uint8)
    # uint8 of only 0/1 (what `(h > 0).astype(np.uint8)` writes) is one bit per column; the report says so
    unpacked = evaluate_embeddings(codes, (txt > 0).astype(np.uint8), c2i, measure="hamming", device="cpu")
    assert unpacked.settings["code_format"] == "unpacked bits" and unpacked.settings["bits"] == img.shape[1]
    report = evaluate_embeddings(
        codes, (txt > 0).astype(np.uint8), c2i, measure="hamming", bits=img.shape[1], device="cpu"
    )
    assert report.settings["bits"] == img.shape[1]
    assert report.instance == unpacked.instance


def test_option_errors():
    img, txt, c2i, labels = _data()
    with pytest.raises(OptionError, match="measure"):
        evaluate_embeddings(img, txt, c2i, measure="manhattan")
    with pytest.raises(OptionError, match="ties"):
        evaluate_embeddings(img, txt, c2i, ties="random")
    with pytest.raises(OptionError, match="map_variant"):
        evaluate_embeddings(img, txt, c2i, labels, map_variant="trec")
    with pytest.raises(OptionError, match="recall_ks"):
        evaluate_embeddings(img, txt, c2i, recall_ks=(0,))
    with pytest.raises(OptionError, match="memory_budget"):
        evaluate_embeddings(img, txt, c2i, memory_budget="lots")
