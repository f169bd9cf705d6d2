"""Karpathy split files (dataset_{coco,flickr30k,flickr8k}.json) and the dataset folder loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from fico_registry.data import Corpus, load_coco, load_dataset, load_flickr8k, load_flickr30k, load_karpathy
from fico_registry.errors import DataFormatError, LabelError, MissingInputError


def _sentence(imgid: int, sentid: int, text: str) -> dict:
    return {"tokens": text.lower().split(), "raw": text, "imgid": imgid, "sentid": sentid}


def coco_json(
    path: Path,
    n_test: int = 5000,
    extra: dict[int, int] | None = None,
    n_val: int = 3,
    n_train: int = 4,
    n_restval: int = 2,
) -> Path:
    """A dataset_coco.json in Karpathy's layout. extra: test image index -> sentences beyond 5."""
    extra = extra if extra is not None else {7: 1, 100: 1, 2000: 2, 4999: 1, 10: 1, 11: 1, 12: 1, 13: 1, 14: 1}
    images = []
    sentid = 0
    plan = [("test", n_test), ("val", n_val), ("train", n_train), ("restval", n_restval)]
    imgid = 0
    for split, count in plan:
        for k in range(count):
            folder = "train2014" if split == "train" else "val2014"
            cocoid = 100000 + imgid
            n_sent = 5 + (extra.get(k, 0) if split == "test" else 0)
            sentences = []
            for s in range(n_sent):
                raw = f"A {split} photo number {k} caption {s} " + ("\n" if s == 0 else "")
                sentences.append(_sentence(imgid, sentid, raw))
                sentid += 1
            images.append(
                {
                    "filepath": folder,
                    "sentids": [x["sentid"] for x in sentences],
                    "filename": f"COCO_{folder}_{cocoid:012d}.jpg",
                    "imgid": imgid,
                    "split": split,
                    "sentences": sentences,
                    "cocoid": cocoid,
                }
            )
            imgid += 1
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def flickr_json(path: Path, dataset: str = "flickr30k", n_test: int = 1000, n_val: int = 2, n_train: int = 3) -> Path:
    images = []
    sentid = 0
    imgid = 0
    for split, count in (("train", n_train), ("test", n_test), ("val", n_val)):
        for _k in range(count):
            name = f"{1000000 + imgid}.jpg" if dataset == "flickr30k" else f"{1000000 + imgid}_ab12cd.jpg"
            sentences = [_sentence(imgid, sentid + s, f" Caption {s} of image {imgid}. ") for s in range(5)]
            sentid += 5
            images.append(
                {
                    "sentids": [x["sentid"] for x in sentences],
                    "imgid": imgid,
                    "sentences": sentences,
                    "split": split,
                    "filename": name,
                }
            )
            imgid += 1
    path.write_text(json.dumps({"images": images, "dataset": dataset}))
    return path


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory) -> Path:
    return coco_json(tmp_path_factory.mktemp("coco") / "dataset_coco.json")


def test_coco_5k_test_keeps_every_sentence_25010(coco_file):
    corpus = load_karpathy(coco_file, "test")
    assert corpus.n_images == 5000
    assert corpus.n_captions == 25_010
    counts = corpus.captions_per_image
    assert counts.min() == 5 and counts.max() == 7
    assert counts[2000] == 7 and counts[7] == 6
    assert corpus.image_ids[0] == "100000"  # the cocoid
    assert corpus.image_paths[0] == "val2014/COCO_val2014_000000100000.jpg"
    assert corpus.captions[0] == "A test photo number 0 caption 0"  # stripped
    assert corpus.caption_ids[:2] == ["0", "1"]
    # file order: image 7's six captions are consecutive
    seven = [c for c, i in zip(corpus.captions, corpus.caption_to_image, strict=True) if i == 7]
    assert [c.rsplit(" ", 1)[1] for c in seven] == ["0", "1", "2", "3", "4", "5"]
    assert corpus.meta["id_kind"] == "cocoid"


def test_coco_captions_per_image_5_matches_precomputed_25000(coco_file):
    corpus = load_karpathy(coco_file, "test", captions_per_image=5)
    assert (corpus.n_images, corpus.n_captions) == (5000, 25_000)
    assert np.array_equal(corpus.caption_to_image, np.repeat(np.arange(5000), 5))
    assert corpus.content_hash != load_karpathy(coco_file, "test").content_hash


def test_coco_train_includes_restval_and_restval_alone(coco_file):
    train = load_karpathy(coco_file, "train")
    restval = load_karpathy(coco_file, "restval")
    assert train.n_images == 6 and restval.n_images == 2
    assert set(restval.image_ids) <= set(train.image_ids)
    assert train.image_paths[0].startswith("train2014/") and restval.image_paths[0].startswith("val2014/")
    assert load_karpathy(coco_file, "val").n_images == 3


def test_flickr30k_test_1000_by_5000(tmp_path):
    corpus = load_karpathy(flickr_json(tmp_path / "dataset_flickr30k.json"), "test", image_root=tmp_path / "imgs")
    assert (corpus.n_images, corpus.n_captions) == (1000, 5000)
    assert corpus.name == "flickr30k"
    assert corpus.image_ids[0] == "1000003"  # 3 train images come first in the file
    assert corpus.image_paths[0] == "1000003.jpg"
    assert corpus.captions[0] == "Caption 0 of image 3."
    assert corpus.image_path(0) == (tmp_path / "imgs" / "1000003.jpg").resolve()
    assert corpus.meta["id_kind"] == "filename-stem"


def test_bad_inputs(tmp_path, coco_file):
    with pytest.raises(ValueError, match="split"):
        load_karpathy(coco_file, "dev")
    with pytest.raises(MissingInputError):
        load_karpathy(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="JSON"):
        load_karpathy(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text(
        json.dumps({"images": [{"split": "train", "filename": "a.jpg", "sentences": [{"raw": "x"}]}]})
    )
    with pytest.raises(DataFormatError, match="no images in split 'test'"):
        load_karpathy(tmp_path / "empty.json", "test")
    short = coco_json(tmp_path / "short.json", n_test=3, extra={})
    doc = json.loads(short.read_text())
    doc["images"][0]["sentences"] = doc["images"][0]["sentences"][:4]
    short.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match="fewer than captions_per_image=5"):
        load_karpathy(short, "test", captions_per_image=5)
    assert load_karpathy(short, "test").n_captions == 14


# -- dataset folders -------------------------------------------------------------------------------
def _regions(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 36, 2048), dtype=np.float32)


def test_flickr30k_folder_with_fico_labels_and_scan_regions(tmp_path):
    flickr_json(tmp_path / "dataset_flickr30k.json", n_test=20)
    labels = (np.random.default_rng(1).random((20, 80)) < 0.1).astype(np.float64)  # MATLAB doubles
    scipy.io.savemat(tmp_path / "flickr30k-karpathy-test-lall.mat", {"LAll": labels})
    (tmp_path / "f30k_precomp").mkdir()
    regions = _regions(20)
    np.save(tmp_path / "f30k_precomp" / "test_ims.npy", regions)
    corpus = load_flickr30k(root=tmp_path, split="test")
    assert (corpus.n_images, corpus.n_captions) == (20, 100)
    assert np.array_equal(corpus.labels, labels.astype(np.uint8))
    assert corpus.class_names[0] == "person" and len(corpus.class_names) == 80
    assert corpus.meta["labels_source"] == "flickr30k-karpathy-test-lall.mat"
    assert np.array_equal(corpus.features["regions"].rows([3, 1]), regions[[3, 1]])
    assert corpus.meta["images_present"] is False
    # the same through the registry
    again = load_dataset("flickr30k", root=tmp_path)
    assert again.content_hash == corpus.content_hash
    # labels that do not line up with the split
    scipy.io.savemat(tmp_path / "flickr30k-karpathy-test-lall.mat", {"LAll": labels[:19]})
    with pytest.raises(LabelError, match="19 label rows but the corpus has 20 images"):
        load_flickr30k(root=tmp_path)
    assert load_flickr30k(root=tmp_path, labels=False).labels is None


def test_coco_folder_testall_regions_repeated_layout_and_instances(tmp_path):
    coco_json(tmp_path / "dataset_coco.json", n_test=6, extra={2: 1})
    (tmp_path / "precomp").mkdir()
    base = _regions(6)
    # one row per caption (each image 5 times), as rkiros-style files: im_div=1 layout
    np.save(tmp_path / "precomp" / "testall_ims.npy", np.repeat(base, 5, axis=0))
    np.save(tmp_path / "precomp" / "test_ims.npy", _regions(2))  # the 1K-style file: too small, skipped
    (tmp_path / "annotations").mkdir()
    instances = {
        "images": [{"id": 100000 + i} for i in range(6)],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}],
        "annotations": [
            {"image_id": 100000, "category_id": 3},
            {"image_id": 100000, "category_id": 1},
            {"image_id": 100004, "category_id": 90},
            {"image_id": 100004, "category_id": 90},
        ],
    }
    (tmp_path / "annotations" / "instances_val2014.json").write_text(json.dumps(instances))
    corpus = load_coco(root=tmp_path, split="test")
    assert (corpus.n_images, corpus.n_captions) == (6, 31)
    assert corpus.class_names == ["person", "car", "toothbrush"]
    assert corpus.labels.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 0]]
    ref = corpus.features["regions"]
    assert ref.index.tolist() == [0, 5, 10, 15, 20, 25]
    assert np.array_equal(ref.rows(np.arange(6)), base)
    assert corpus.meta["regions_source"] == "testall_ims.npy"


def test_coco_regions_aligned_by_ids_file(tmp_path):
    coco_json(tmp_path / "dataset_coco.json", n_test=4, extra={})
    (tmp_path / "precomp").mkdir()
    base = _regions(4)
    order = [2, 0, 3, 1]
    np.save(tmp_path / "precomp" / "testall_ims.npy", base[order])
    # one id per caption, as some VSE-lineage id files
    ids = [str(100000 + i) for i in order for _ in range(5)]
    (tmp_path / "precomp" / "testall_ids.txt").write_text("\n".join(ids) + "\n")
    corpus = load_coco(root=tmp_path, labels=False)
    assert np.array_equal(corpus.features["regions"].rows(np.arange(4)), base)
    assert corpus.meta["regions_aligned_by"] == "ids"
    by_order = load_coco(root=tmp_path, labels=False, region_ids="order")
    assert np.array_equal(by_order.features["regions"].rows(np.arange(4)), base[order])


def test_explicit_region_file_with_wrong_count_errors(tmp_path):
    flickr_json(tmp_path / "dataset_flickr8k.json", dataset="flickr8k", n_test=5)
    np.save(tmp_path / "other.npy", _regions(7))
    with pytest.raises(MissingInputError, match="7 rows but the corpus has 5 images"):
        load_flickr8k(root=tmp_path, regions=tmp_path / "other.npy")
    corpus = load_flickr8k(root=tmp_path)
    assert corpus.image_ids[0].endswith("_ab12cd") and "regions" not in corpus.features


def test_missing_folder_and_json(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        load_coco(root=tmp_path / "nowhere")
    with pytest.raises(MissingInputError, match=r"dataset_coco\.json"):
        load_coco(root=tmp_path)


def test_saved_karpathy_corpus_round_trips(tmp_path, coco_file):
    corpus = load_karpathy(coco_file, "test", image_root=tmp_path)
    again = Corpus.load(corpus.save(tmp_path / "saved"))
    assert again.content_hash == corpus.content_hash
    assert list(again.captions) == list(corpus.captions)
    assert again.root == corpus.root
