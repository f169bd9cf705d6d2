"""Karpathy sentences -> COCO caption ids, and ECCV Caption / CxC judgments aligned to a corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fico_registry.data.coco_captions import coco_caption_ids
from fico_registry.data.karpathy import load_karpathy
from fico_registry.errors import DataFormatError, MissingInputError


def _karpathy(tmp_path, images):
    doc = {"dataset": "coco", "images": [
        {"cocoid": cocoid, "filename": f"COCO_val2014_{cocoid:012d}.jpg", "filepath": "val2014", "split": "test",
         "sentences": [{"raw": raw, "sentid": 100 * cocoid + i} for i, raw in enumerate(sentences)]}
        for cocoid, sentences in images
    ]}  # fmt: skip
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(doc))
    return load_karpathy(path, "test")


def test_sentences_match_annotations_by_normalised_text(tmp_path):
    corpus = _karpathy(
        tmp_path, [(7, ["A dog runs.", "a dog runs", "Two cats"]), (9, ["A red bus ", "nothing like it"])]
    )
    captions = tmp_path / "captions_val2014.json"
    captions.write_text(json.dumps({"annotations": [
        {"image_id": 7, "id": 70, "caption": "a  dog runs"},
        {"image_id": 7, "id": 71, "caption": "A dog runs."},
        {"image_id": 7, "id": 72, "caption": "Two cats."},
        {"image_id": 9, "id": 90, "caption": "A red bus"},
        {"image_id": 8, "id": 80, "caption": "nothing like it"},  # another image's caption: never matched
    ]}))  # fmt: skip
    ids = coco_caption_ids(corpus, captions)
    assert sorted(ids[:2].tolist()) == [70, 71]  # identical texts take distinct annotations
    assert ids[2:].tolist() == [72, 90, -1]


def test_missing_or_wrong_files_are_typed_errors(tmp_path):
    corpus = _karpathy(tmp_path, [(7, ["a dog"])])
    with pytest.raises(MissingInputError, match=r"captions_val2014\.json"):
        coco_caption_ids(corpus, tmp_path / "captions_val2014.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DataFormatError, match="'annotations' list"):
        coco_caption_ids(corpus, bad)
    from dataclasses import replace

    with pytest.raises(DataFormatError, match="not COCO image ids"):
        coco_caption_ids(replace(corpus, meta={**corpus.meta, "id_kind": "filename-stem"}), bad)


def test_eccv_judgments_align_to_a_karpathy_corpus(tmp_path):
    pytest.importorskip("eccv_caption")
    from importlib import resources

    from fico_registry.data.eccv_caption import eccv_caption_judgments

    data = resources.files("eccv_caption") / "data"
    eccv_i2t = {int(k): v for k, v in json.loads((data / "eccv_image_to_caption.json").read_text()).items()}
    coco_i2c = {int(k): v for k, v in json.loads((data / "original_image_to_caption.json").read_text()).items()}
    chosen = sorted(eccv_i2t)[:3]
    # a corpus of three real test images, each with its five COCO captions (text = "caption <id>")
    corpus = _karpathy(tmp_path, [(image, [f"caption {c}" for c in coco_i2c[image]]) for image in chosen])
    captions = tmp_path / "captions_val2014.json"
    captions.write_text(json.dumps({"annotations": [
        {"image_id": image, "id": c, "caption": f"caption {c}"} for image in chosen for c in coco_i2c[image]
    ]}))  # fmt: skip
    caption_ids = coco_caption_ids(corpus, captions)
    judged = eccv_caption_judgments([int(x) for x in corpus.image_ids], caption_ids, "eccv")
    for row, image in enumerate(chosen):
        got = set(caption_ids[judged.i2t.indices[judged.i2t.indptr[row] : judged.i2t.indptr[row + 1]]].tolist())
        assert got == set(eccv_i2t[image]) & set(caption_ids.tolist())
    original = eccv_caption_judgments([int(x) for x in corpus.image_ids], caption_ids, "coco")
    assert np.array_equal(original.t2i.indices, np.asarray(corpus.caption_to_image))  # COCO: each caption's image
    assert "dropped" in judged.source  # positives outside this 3-image corpus


def test_synthetic_graded_judgments_follow_the_scenes(tmp_path):
    import torch

    from fico_registry.data.synthetic import generate_scenes, graded_judgments, synthetic
    from fico_registry.evaluator.judged import judged_metrics

    corpus = synthetic(n_images=40, captions_per_image=3, seed=3, root=tmp_path / "syn", regions=False, progress=False)
    judged = graded_judgments(corpus)
    scenes = generate_scenes(40, 3, "test")
    i2t = judged.i2t
    for image in (0, 7, 39):
        cols = i2t.indices[i2t.indptr[image] : i2t.indptr[image + 1]]
        grades = dict(zip(cols.tolist(), i2t.grades[i2t.indptr[image] : i2t.indptr[image + 1]].tolist(), strict=True))
        own = np.flatnonzero(corpus.caption_to_image == image)
        assert all(grades[c] == len(scenes[image].things) for c in own)  # a scene shares all its objects with itself
    assert judged.t2i.n_queries == corpus.n_captions and i2t.graded
    # ranking by the grades themselves is ideal: NDCG 1 in both directions
    dense = np.zeros((i2t.n_queries, i2t.n_candidates))
    for q in range(i2t.n_queries):
        sl = slice(i2t.indptr[q], i2t.indptr[q + 1])
        dense[q, i2t.indices[sl]] = i2t.grades[sl]
    out = judged_metrics(lambda lo, hi: torch.from_numpy(dense[lo:hi]), i2t, ties="pessimistic", ndcg_ks=(10,))
    assert out["NDCG@10"] == pytest.approx(1.0) and out["judged_queries"] == 40
