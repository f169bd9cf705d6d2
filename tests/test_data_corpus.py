"""Corpus: hashing, save / load round trips, duplicated(), subset(), labels."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from fico_registry.data import Corpus, FeatureRef, Repeated
from fico_registry.errors import DataFormatError, LabelError, MappingError, MissingInputError


def make_corpus(tmp_path=None, with_features: bool = False) -> Corpus:
    corpus = Corpus(
        name="toy",
        split="test",
        image_ids=["a", "b", "c"],
        captions=["a dog", "a dog running", "a cat", "a red car", "a car", "a car on a road ünïcode"],
        caption_to_image=np.array([0, 0, 1, 2, 2, 2]),
        image_paths=["a.png", "b.png", "c.png"],
        root=None if tmp_path is None else str(tmp_path / "images"),
        caption_ids=["0", "1", "2", "3", "4", "5"],
        labels=np.array([[1, 0], [0, 1], [1, 1]]),
        class_names=["animal", "vehicle"],
        meta={"source": "test"},
    )
    if with_features:
        assert tmp_path is not None
        regions = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
        np.save(tmp_path / "test_ims.npy", regions)
        texts = np.arange(6 * 3, dtype=np.float32).reshape(6, 3)
        np.save(tmp_path / "texts.npy", texts)
        corpus = corpus.with_features("regions", tmp_path / "test_ims.npy", index=[2, 1, 0])
        corpus = corpus.with_features("doc2vec", tmp_path / "texts.npy", modality="text")
    return corpus


def test_validation_errors():
    with pytest.raises(MappingError, match="no caption"):
        Corpus(name="x", split="t", image_ids=["a", "b"], captions=["c"], caption_to_image=np.array([0]))
    with pytest.raises(MappingError, match="must lie in"):
        Corpus(name="x", split="t", image_ids=["a"], captions=["c"], caption_to_image=np.array([1]))
    with pytest.raises(MappingError, match="integer"):
        Corpus(name="x", split="t", image_ids=["a"], captions=["c"], caption_to_image=np.array([0.0]))
    with pytest.raises(LabelError, match="rows"):
        make_corpus().with_labels(np.zeros((2, 2)))
    with pytest.raises(LabelError, match="multi-hot"):
        make_corpus().with_labels(np.full((3, 2), 2))
    with pytest.raises(LabelError, match="class names"):
        make_corpus().with_labels(np.zeros((3, 2)), ["one"])


def test_hash_is_content_not_identity(tmp_path):
    one, two = make_corpus(), make_corpus(tmp_path)
    assert one.content_hash == two.content_hash  # the root is not ground truth
    relabelled = one.with_labels(np.array([[1, 0], [1, 0], [1, 1]]), ["animal", "vehicle"])
    assert relabelled.content_hash != one.content_hash
    # features are not ground truth either: attaching them keeps the hash
    assert make_corpus(tmp_path, with_features=True).content_hash == one.content_hash


def test_save_load_round_trip_with_features(tmp_path):
    corpus = make_corpus(tmp_path, with_features=True)
    folder = corpus.save(tmp_path / "saved")
    again = Corpus.load(folder)
    assert again.content_hash == corpus.content_hash
    assert list(again.captions) == list(corpus.captions)
    assert np.array_equal(again.labels, corpus.labels) and again.class_names == ["animal", "vehicle"]
    assert again.root == str((tmp_path / "images").resolve())
    assert np.array_equal(again.features["regions"].rows([0, 2]), corpus.features["regions"].rows([0, 2]))
    assert again.features["doc2vec"].modality == "text" and again.features["doc2vec"].index is None
    assert again.meta["source"] == "test"
    # no pickles anywhere
    for path in folder.iterdir():
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)
    # editing the saved captions is detected
    doc = json.loads((folder / "corpus.json").read_text())
    doc["captions"][0] = "a wolf"
    (folder / "corpus.json").write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match="edited"):
        Corpus.load(folder)
    with pytest.raises(DataFormatError, match=r"no corpus\.json"):
        Corpus.load(tmp_path / "nothing")


def test_saved_folder_with_its_own_files_can_move(tmp_path):
    """Paths inside the saved folder are stored relative to it."""
    home = tmp_path / "home"
    (home / "images").mkdir(parents=True)
    regions = np.ones((3, 2, 4), dtype=np.float32)
    np.save(home / "test_ims.npy", regions)
    corpus = replace(make_corpus(), root=str(home), meta={})
    corpus = corpus.with_features("regions", home / "test_ims.npy")
    corpus.save(home)
    shutil.move(home, tmp_path / "moved")
    moved = Corpus.load(tmp_path / "moved")
    assert moved.root == str((tmp_path / "moved").resolve())
    assert np.array_equal(moved.features["regions"].rows([1]), regions[[1]])


def test_duplicated_semantics(tmp_path):
    corpus = make_corpus(tmp_path, with_features=True)
    dup = corpus.duplicated(3)
    assert (dup.n_images, dup.n_captions, dup.duplication) == (9, 18, 3)
    # caption j of copy k describes image i of copy k
    assert dup.caption_to_image.tolist() == [0, 0, 1, 2, 2, 2, 3, 3, 4, 5, 5, 5, 6, 6, 7, 8, 8, 8]
    assert list(dup.image_ids[:4]) == ["a", "b", "c", "a#1"] and dup.image_ids[-1] == "c#2"
    assert dup.captions[6] == "a dog" and len(set(dup.image_ids)) == 9
    assert np.array_equal(dup.labels, np.tile(corpus.labels, (3, 1)))
    # features follow the copies: image 4 is image 1 again, caption 9 is caption 3
    assert np.array_equal(dup.features["regions"].rows([4]), corpus.features["regions"].rows([1]))
    assert np.array_equal(dup.features["doc2vec"].rows([9]), corpus.features["doc2vec"].rows([3]))
    assert dup.features["regions"].count == 9
    # identity: derived from the base hash, differs per factor, stable across calls
    assert dup.content_hash not in (corpus.content_hash, corpus.duplicated(2).content_hash)
    assert dup.content_hash == corpus.duplicated(3).content_hash
    assert corpus.duplicated(1) is corpus
    with pytest.raises(ValueError):
        corpus.duplicated(0)
    with pytest.raises(ValueError, match="base corpus"):
        dup.save(tmp_path / "dup")
    # attaching features to a duplicated corpus keeps its identity
    np.save(tmp_path / "more.npy", np.zeros((9, 2), dtype=np.float32))
    assert dup.with_features("more", tmp_path / "more.npy").content_hash == dup.content_hash
    assert dup.subset(4).n_images == 4 and dup.subset(4).caption_to_image.max() == 3


def test_repeated_sequence():
    rep = Repeated(["x", "y"], 3, suffix=True)
    assert len(rep) == 6 and rep[0] == "x" and rep[3] == "y#1" and rep[-1] == "y#2"
    assert rep[1:4] == ["y", "x#1", "y#1"]
    with pytest.raises(IndexError):
        rep[6]


def test_subset_keeps_captions_labels_and_features(tmp_path):
    corpus = make_corpus(tmp_path, with_features=True)
    sub = corpus.subset(2)
    assert sub.n_images == 2 and list(sub.captions) == ["a dog", "a dog running", "a cat"]
    assert sub.labels.tolist() == [[1, 0], [0, 1]]
    assert np.array_equal(sub.features["regions"].rows([1]), corpus.features["regions"].rows([1]))
    assert np.array_equal(sub.features["doc2vec"].rows([2]), corpus.features["doc2vec"].rows([2]))
    assert sub.content_hash != corpus.content_hash
    assert corpus.subset(10) is corpus


def test_feature_ref_rows_and_missing_images(tmp_path):
    np.save(tmp_path / "f.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    ref = FeatureRef(str(tmp_path / "f.npy"), "image")
    assert ref.rows(slice(None)).shape == (3, 2) and ref.count == 3
    corpus = make_corpus(tmp_path)
    with pytest.raises(MissingInputError, match="not found"):
        corpus.load_image(0)
    with pytest.raises(MissingInputError, match=r"has no 'regions' features \(it has: none\)"):
        corpus.feature("regions")
    assert make_corpus(tmp_path, with_features=True).feature("regions").modality == "image"


def test_importing_the_data_package_stays_light():
    import subprocess
    import sys

    code = "import sys, fico_registry.data; print(sorted({'torch', 'scipy', 'h5py', 'PIL', 'rich'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
