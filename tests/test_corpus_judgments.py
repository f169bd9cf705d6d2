"""Corpus.judgments: attach, hash, save / load, subset, duplicate; load_dataset(..., judgments=...)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fico_registry.data.corpus import Corpus
from fico_registry.data.judgments import Judgments, JudgmentSet
from fico_registry.errors import DataFormatError, MissingInputError, OptionError, ShapeError


def _corpus() -> Corpus:
    return Corpus(
        name="toy", split="test", image_ids=["a", "b", "c"], captions=[f"t{j}" for j in range(6)],
        caption_to_image=np.repeat(np.arange(3), 2), caption_ids=[f"c{j}" for j in range(6)],
    )  # fmt: skip


def _set() -> JudgmentSet:
    i2t = Judgments.from_pairs([0, 0, 1, 2, 2], [0, 3, 2, 4, 1], 3, 6, [1, 2, 1, 3, 1])
    return JudgmentSet("ext", i2t, i2t.transpose(), source="hand")


def _same(a: Judgments | None, b: Judgments | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.n_queries, a.n_candidates) == (b.n_queries, b.n_candidates) and all(
        np.array_equal(x, y) for x, y in ((a.indptr, b.indptr), (a.indices, b.indices), (a.grades, b.grades))
    )


def test_hash_changes_only_when_judgments_are_present(tmp_path):
    plain = _corpus()
    judged = plain.with_judgments("ext", _set())
    assert _corpus().content_hash == plain.content_hash  # no judgments: the hash is what it was
    assert judged.content_hash != plain.content_hash
    assert plain.with_judgments("ext", (_set().i2t, None)).content_hash != judged.content_hash
    assert judged.with_labels(np.eye(3, dtype=np.uint8)).judgments.keys() == {"ext"}


def test_save_and_load_round_trip(tmp_path):
    judged = _corpus().with_judgments("ext", _set()).with_judgments("half", (None, _set().t2i))
    judged.save(tmp_path / "c")
    assert (tmp_path / "c" / "judgments" / "ext.i2t.npz").is_file()
    back = Corpus.load(tmp_path / "c")  # the recorded content hash is checked on load
    assert back.content_hash == judged.content_hash
    for name in ("ext", "half"):
        for direction in ("i2t", "t2i"):
            assert _same(back.judgments[name].direction(direction), judged.judgments[name].direction(direction))
    assert back.judgments["ext"].source == "hand"
    _corpus().save(tmp_path / "plain")
    assert "judgments" not in json.loads((tmp_path / "plain" / "corpus.json").read_text())
    (tmp_path / "c" / "judgments" / "ext.t2i.npz").unlink()
    with pytest.raises(DataFormatError, match=r"ext\.t2i\.npz is missing"):
        Corpus.load(tmp_path / "c")


def test_subset_keeps_the_judgments_inside_it():
    sub = _corpus().with_judgments("ext", _set()).subset(2)  # images a, b and captions 0..3
    i2t = sub.judgments["ext"].i2t
    assert (i2t.n_queries, i2t.n_candidates) == (2, 4)
    assert {(q, int(c)) for q in range(2) for c in i2t.indices[i2t.indptr[q] : i2t.indptr[q + 1]]} == {
        (0, 0),
        (0, 3),
        (1, 2),
    }
    assert _same(sub.judgments["ext"].t2i, i2t.transpose())


def test_duplicated_copies_judge_within_their_copy():
    dup = _corpus().with_judgments("ext", _set()).duplicated(2)
    i2t = dup.judgments["ext"].i2t
    assert (i2t.n_queries, i2t.n_candidates) == (6, 12)
    assert i2t.indices[i2t.indptr[3] : i2t.indptr[4]].tolist() == [6, 9]  # copy 1 of image a: copy 1 of captions 0, 3


def test_bad_corpus_judgments_are_typed_errors():
    with pytest.raises(ShapeError, match="corpus judgments 'x' \\(i2t\\)"):
        _corpus().with_judgments("x", (Judgments.from_pairs([0], [0], 2, 6), None))
    with pytest.raises(DataFormatError, match="names files"):
        _corpus().with_judgments("a/b", _set())
    with pytest.raises(DataFormatError, match="must be a JudgmentSet"):
        Corpus(
            name="t", split="s", image_ids=["a"], captions=["x"], caption_to_image=np.zeros(1, int), judgments={"x": 1}
        )


def _coco_root(tmp_path, captions=True):
    from importlib import resources

    data = resources.files("eccv_caption") / "data"
    coco_i2c = {int(k): v for k, v in json.loads((data / "original_image_to_caption.json").read_text()).items()}
    eccv = {int(k) for k in json.loads((data / "eccv_image_to_caption.json").read_text())}
    chosen = sorted(eccv)[:4]
    doc = {"dataset": "coco", "images": [
        {"cocoid": i, "filename": f"COCO_val2014_{i:012d}.jpg", "filepath": "val2014", "split": "test",
         "sentences": [{"raw": f"caption {c}", "sentid": c} for c in coco_i2c[i]]}
        for i in chosen
    ]}  # fmt: skip
    root = tmp_path / "coco"
    root.mkdir()
    (root / "dataset_coco.json").write_text(json.dumps(doc))
    if captions:
        (root / "annotations").mkdir()
        (root / "annotations" / "captions_val2014.json").write_text(json.dumps({"annotations": [
            {"image_id": i, "id": c, "caption": f"caption {c}"} for i in chosen for c in coco_i2c[i]
        ]}))  # fmt: skip
    return root


def test_load_dataset_coco_attaches_eccv_and_cxc(tmp_path):
    pytest.importorskip("eccv_caption")
    from fico_registry import load_dataset

    root = _coco_root(tmp_path)
    corpus = load_dataset(
        "coco", split="test", root=root, judgments=("eccv", "cxc", "coco"), labels=False, regions=False
    )
    assert set(corpus.judgments) == {"eccv", "cxc", "coco"}
    coco = corpus.judgments["coco"]
    assert np.array_equal(coco.t2i.indices, corpus.caption_to_image)  # COCO's own positives = the instance map
    assert corpus.judgments["eccv"].i2t.counts.sum() > 0


def test_load_dataset_judgments_refuse_clearly(tmp_path):
    pytest.importorskip("eccv_caption")
    from fico_registry import load_dataset

    root = _coco_root(tmp_path, captions=False)
    with pytest.raises(MissingInputError, match=r"captions_val2014\.json"):
        load_dataset("coco", split="test", root=root, judgments="eccv", labels=False, regions=False)
    with pytest.raises(OptionError, match="unknown judgments 'ecv'"):
        load_dataset("coco", split="test", root=root, judgments="ecv", labels=False, regions=False)
    with pytest.raises(OptionError, match="only for the synthetic corpus"):
        load_dataset("coco", split="test", root=root, judgments="shared-objects", labels=False, regions=False)


def test_synthetic_shared_objects_by_name(tmp_path):
    from fico_registry import load_dataset

    corpus = load_dataset("synthetic", split="test", root=tmp_path / "s", n_images=12, judgments="shared-objects")
    assert corpus.judgments["shared-objects"].i2t.graded
    with pytest.raises(OptionError, match="COCO ids"):
        load_dataset("synthetic", split="test", root=tmp_path / "s", n_images=12, judgments="eccv")


def test_judgments_do_not_change_what_the_models_see():
    plain = _corpus()
    judged = plain.with_judgments("ext", _set())
    assert judged.without_judgments().content_hash == plain.content_hash  # the embedding cache key
    assert plain.without_judgments() is plain
