"""General retrieval with judged relevance; the FiCo directions are its special cases."""

from __future__ import annotations

import numpy as np
import pytest

from fico_registry import evaluate_embeddings
from fico_registry.data.judgments import Judgments
from fico_registry.errors import OptionError, ShapeError
from fico_registry.evaluator.retrieval import evaluate_retrieval, fuse_keys


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
@pytest.mark.parametrize("measure", ["cosine", "hamming"])
def test_instance_recall_equals_judged_recall_of_its_own_map(measure, ties):
    rng = np.random.default_rng(1)
    c2i = np.repeat(np.arange(30), rng.integers(1, 6, size=30))  # uneven captions per image
    if measure == "hamming":  # 8-bit codes: heavy ties
        img = rng.integers(0, 2, size=(30, 8)).astype(bool)
        txt = np.where(rng.random((len(c2i), 8)) < 0.2, ~img[c2i], img[c2i])
    else:
        img = rng.standard_normal((30, 8)).astype(np.float32)
        txt = (img[c2i] + rng.standard_normal((len(c2i), 8))).astype(np.float32)
    report = evaluate_embeddings(img, txt, c2i, measure=measure, ties=ties, progress=False).to_dict()["instance"]
    for direction, (q, c) in {"i2t": (img, txt), "t2i": (txt, img)}.items():
        judged = Judgments.from_map(c2i, 30, direction)
        out = evaluate_retrieval(q, c, judged, measure=measure, ties=ties).to_dict()["judged"]["judged"]
        for k in (1, 5, 10):
            assert out[f"R@{k}"] == pytest.approx(report[direction][f"R@{k}"], abs=1e-12), (direction, k)


def test_fused_keys_text_to_image_and_text_end_to_end(tmp_path):
    """A synthetic multimodal-key task: captions retrieve (image, first caption) keys, graded by shared objects."""
    from fico_registry import load_model
    from fico_registry.data.synthetic import graded_judgments, synthetic

    corpus = synthetic(n_images=24, captions_per_image=3, seed=5, root=tmp_path / "syn", regions=False, progress=False)
    model = load_model("reference-dual", config="tiny", device="cpu")
    images = model.encode_images([corpus.load_image(i) for i in range(corpus.n_images)])
    texts = model.encode_texts(list(corpus.captions))
    first = np.array([np.flatnonzero(corpus.caption_to_image == i)[0] for i in range(corpus.n_images)])
    keys, how = fuse_keys(images, texts[first], weights=(0.7, 0.3))
    queries = np.setdiff1d(np.arange(corpus.n_captions), first)  # the captions not used in a key
    t2i = graded_judgments(corpus).t2i
    q, c, g = _subset(t2i, queries)
    judged = Judgments.from_pairs(q, c, len(queries), corpus.n_images, g)
    out = evaluate_retrieval(texts[queries], keys, judged, keys={"queries": "text", "candidates": how}).to_dict()
    metrics = out["judged"]["judged"]
    assert out["settings"]["keys"]["candidates"]["weights"] == [0.7, 0.3]
    assert metrics["judged_queries"] == len(queries)
    assert 0 <= metrics["NDCG@10"] <= 1 and 0 <= metrics["mAP@R"] <= 1


def _subset(judged: Judgments, queries: np.ndarray):
    q, c, g = [], [], []
    for new, old in enumerate(queries):
        sl = slice(judged.indptr[old], judged.indptr[old + 1])
        q += [new] * (sl.stop - sl.start)
        c += judged.indices[sl].tolist()
        g += judged.grades[sl].tolist()
    return q, c, g


def test_bad_retrieval_inputs_are_typed_errors():
    with pytest.raises(ShapeError, match="pairs row i"):
        fuse_keys(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(OptionError, match="non-negative"):
        fuse_keys(np.ones((3, 4)), np.ones((3, 4)), weights=(-1, 1))
    with pytest.raises(ShapeError, match="judgments 'judged': judgments cover 2 queries"):
        evaluate_retrieval(np.ones((3, 4)), np.ones((5, 4)), Judgments.from_pairs([0], [1], 2, 5))
