"""Category labels (COCO instances, FiCo-ITR LAll .mat v5 / v7.3, .h5, .npy) and NUS-WIDE."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from fico_registry.data import (
    COCO_CATEGORY_NAMES,
    Corpus,
    coco_category_labels,
    label_matrix_for_corpus,
    load_dataset,
    load_nus_wide,
    read_label_matrix,
)
from fico_registry.errors import DataFormatError, LabelError, MissingInputError


def write_mat73(
    path: Path, variables: dict[str, np.ndarray], groups: dict[str, dict[str, np.ndarray]] | None = None
) -> Path:
    """A MATLAB v7.3 MAT-file as MATLAB writes it: HDF5 behind a 512-byte header, column-major."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        for name, value in variables.items():
            dataset = handle.create_dataset(name, data=np.asarray(value).T)
            dataset.attrs["MATLAB_class"] = np.bytes_("double" if np.asarray(value).dtype.kind == "f" else "uint8")
        for group_name, members in (groups or {}).items():
            group = handle.create_group(group_name)
            group.attrs["MATLAB_class"] = np.bytes_("struct")
            for name, value in members.items():
                group.create_dataset(name, data=np.asarray(value).T).attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    return path


def small_corpus(n: int = 4, ids: list[str] | None = None) -> Corpus:
    ids = ids or [str(100000 + i) for i in range(n)]
    return Corpus(
        name="coco",
        split="test",
        image_ids=ids,
        captions=[f"caption {i}" for i in range(n)],
        caption_to_image=np.arange(n),
        image_paths=[f"val2014/COCO_val2014_{int(i):012d}.jpg" if i.isdigit() else f"{i}.jpg" for i in ids],
    )


def random_labels(n: int, c: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, c)) < 0.3).astype(np.uint8)


# -- COCO instances --------------------------------------------------------------------------------
def instances(path: Path, image_ids: list[int], annotations: list[tuple[int, int]]) -> Path:
    categories = [
        {"id": cid, "name": name, "supercategory": "x"} for cid, name in ((18, "dog"), (1, "person"), (3, "car"))
    ]
    doc = {
        "info": {},
        "images": [
            {"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "width": 640, "height": 480} for i in image_ids
        ],
        "categories": categories,
        "annotations": [
            {"id": k, "image_id": i, "category_id": c, "iscrowd": 0} for k, (i, c) in enumerate(annotations)
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def test_coco_category_labels_orders_by_category_id(tmp_path):
    corpus = small_corpus(3)
    path = instances(
        tmp_path / "instances_val2014.json",
        [100000, 100001, 100002, 5],
        [(100000, 18), (100000, 18), (100002, 1), (100002, 3), (5, 1)],
    )
    labels, names = coco_category_labels(path, corpus)
    assert names == ["person", "car", "dog"]
    assert labels.tolist() == [[0, 0, 1], [0, 0, 0], [1, 1, 0]]
    assert labels.dtype == np.uint8
    assert corpus.with_labels(labels, names).caption_labels.shape == (3, 3)


def test_coco_category_labels_from_file_names_and_two_files(tmp_path):
    corpus = small_corpus(2, ids=["COCO_val2014_000000000007", "COCO_train2014_000000000009"])
    a = instances(tmp_path / "instances_val2014.json", [7], [(7, 3)])
    b = instances(tmp_path / "instances_train2014.json", [9], [(9, 18)])
    labels, _names = coco_category_labels([a, b], corpus)
    assert labels.tolist() == [[0, 1, 0], [0, 0, 1]]
    with pytest.raises(LabelError, match=r"1 of the corpus's 2 images are not in instances_val2014\.json"):
        coco_category_labels(a, corpus)


def test_coco_category_labels_needs_coco_ids(tmp_path):
    corpus = small_corpus(1, ids=["dog-picture"])
    with pytest.raises(LabelError, match="not a COCO image id"):
        coco_category_labels(instances(tmp_path / "i.json", [1], []), corpus)


# -- label matrices --------------------------------------------------------------------------------
def test_lall_mat_v5_v73_h5_npy_agree(tmp_path):
    labels = random_labels(4, 80)
    scipy.io.savemat(tmp_path / "v5.mat", {"LAll": labels.astype(np.float64)})
    write_mat73(tmp_path / "v73.mat", {"LAll": labels.astype(np.float64)})
    with h5py.File(tmp_path / "labels.h5", "w") as handle:
        handle["LAll"] = labels
    np.save(tmp_path / "labels.npy", labels.astype(bool))
    for name in ("v5.mat", "v73.mat", "labels.h5", "labels.npy"):
        read = read_label_matrix(tmp_path / name, n_images=4)
        assert read.dtype == np.uint8 and np.array_equal(read, labels), name
    # the h5 file really is stored (n, c): v7.3 is the transposed one
    with h5py.File(tmp_path / "v73.mat") as handle:
        assert handle["LAll"].shape == (80, 4)
    corpus = small_corpus(4)
    matrix, names = label_matrix_for_corpus(tmp_path / "v73.mat", corpus, class_names="coco")
    assert names == list(COCO_CATEGORY_NAMES) and np.array_equal(matrix, labels)


def test_label_counts_and_values_are_checked(tmp_path):
    scipy.io.savemat(tmp_path / "l.mat", {"LAll": random_labels(5, 10)})
    with pytest.raises(LabelError, match="5 label rows but the corpus has 4 images"):
        label_matrix_for_corpus(tmp_path / "l.mat", small_corpus(4))
    scipy.io.savemat(tmp_path / "t.mat", {"LAll": random_labels(4, 10).T})
    with pytest.raises(LabelError, match="looks transposed"):
        read_label_matrix(tmp_path / "t.mat", n_images=4)
    assert read_label_matrix(tmp_path / "t.mat", n_images=10).shape == (10, 4)
    scipy.io.savemat(tmp_path / "s.mat", {"LAll": np.array([[0.0, 0.7], [1.0, 0.0]])})
    with pytest.raises(LabelError, match="multi-hot"):
        read_label_matrix(tmp_path / "s.mat")
    scipy.io.savemat(tmp_path / "k.mat", {"A": np.zeros((2, 2)), "B": np.zeros((2, 2))})
    with pytest.raises(LabelError, match="no LAll variable"):
        read_label_matrix(tmp_path / "k.mat")
    with pytest.raises(LabelError, match="has no array 'Q'"):
        read_label_matrix(tmp_path / "k.mat", key="Q")
    with pytest.raises(LabelError, match="80 columns"):
        label_matrix_for_corpus(tmp_path / "l.mat", small_corpus(5), class_names="coco")
    with pytest.raises(MissingInputError):
        read_label_matrix(tmp_path / "absent.mat")


def test_query2label_npy_with_names_file(tmp_path):
    corpus = small_corpus(3, ids=["1000", "1001", "1002"])
    labels = random_labels(4, 80, seed=3)
    np.save(tmp_path / "flickr30k_labels.npy", labels)
    (tmp_path / "flickr30k_names.txt").write_text("1002.jpg\n999.jpg\n1000.jpg\n1001.jpg\n")
    matrix, _ = label_matrix_for_corpus(
        tmp_path / "flickr30k_labels.npy", corpus, names=tmp_path / "flickr30k_names.txt"
    )
    assert np.array_equal(matrix, labels[[2, 3, 0]])
    (tmp_path / "few.txt").write_text("1002.jpg\n999.jpg\n1000.jpg\n1003.jpg\n")
    with pytest.raises(LabelError, match="1 corpus images have no label row"):
        label_matrix_for_corpus(tmp_path / "flickr30k_labels.npy", corpus, names=tmp_path / "few.txt")


# -- NUS-WIDE ----------------------------------------------------------------------------------------
def nus_arrays(n: int = 30):
    rng = np.random.default_rng(5)
    return (
        rng.random((n, 4096)).astype(np.float32),
        rng.random((n, 300)).astype(np.float32),
        random_labels(n, 10, seed=6),
    )


def test_nus_wide_v5_with_param_struct(tmp_path):
    x, y, labels = nus_arrays()
    query = np.array([3, 1, 2])  # 1-based
    database = np.arange(4, 31)
    scipy.io.savemat(
        tmp_path / "nus-wide-10k.mat",
        {
            "XAll": x,
            "YAll": y,
            "LAll": labels,
            "param": {"indexQuery": query.astype(float), "indexDatabase": database.astype(float)},
        },
    )
    corpus = load_nus_wide(root=tmp_path, split="query")
    assert (corpus.n_images, corpus.n_captions) == (3, 3)
    assert corpus.image_ids == ["2", "0", "1"]
    assert np.array_equal(corpus.labels, labels[[2, 0, 1]])
    assert np.array_equal(corpus.features["vgg19-fc7"].rows([0, 2]), x[[2, 1]])
    assert np.array_equal(corpus.features["doc2vec"].rows(np.arange(3)), y[[2, 0, 1]])
    assert corpus.features["doc2vec"].modality == "text"
    retrieval = load_dataset("nus-wide", split="retrieval", root=tmp_path)
    assert retrieval.n_images == 27 and retrieval.image_ids[0] == "3"
    assert load_nus_wide(root=tmp_path, split="train").n_images == 27  # train defaults to the database
    # duplicating / subsetting keeps the feature rows right
    assert np.array_equal(corpus.duplicated(2).features["doc2vec"].rows([3]), y[[2]])
    assert np.array_equal(corpus.subset(2).features["vgg19-fc7"].rows([1]), x[[0]])


def test_nus_wide_v73_with_param_group(tmp_path):
    x, y, labels = nus_arrays()
    write_mat73(
        tmp_path / "nus-wide-10k.mat",
        {"XAll": x.astype(np.float64), "YAll": y.astype(np.float64), "LAll": labels.astype(np.float64)},
        groups={
            "param": {"indexQuery": np.array([[30.0, 29.0]]), "indexDatabase": np.arange(1, 29, dtype=float)[None]}
        },
    )
    corpus = load_nus_wide(root=tmp_path)
    assert corpus.image_ids == ["29", "28"]
    assert np.allclose(corpus.features["vgg19-fc7"].rows([0, 1]), x[[29, 28]])
    assert np.array_equal(corpus.labels, labels[[29, 28]])


def test_nus_wide_ucch_tc10_files_default_split(tmp_path):
    x, y, labels = nus_arrays(40)
    y = (y[:, :64] > 0.5).astype(np.float64)  # tag bag-of-words, not Doc2Vec
    scipy.io.savemat(tmp_path / "nus-wide-tc10-xall-vgg.mat", {"XAll": x})
    scipy.io.savemat(tmp_path / "nus-wide-tc10-yall.mat", {"YAll": y})
    scipy.io.savemat(tmp_path / "nus-wide-tc10-lall.mat", {"LAll": labels})
    query = load_nus_wide(root=tmp_path, query_size=10)
    assert query.image_ids[0] == "30" and query.n_images == 10
    assert set(query.features) == {"vgg19-fc7", "text-features"}
    retrieval = load_nus_wide(root=tmp_path, split="retrieval", query_size=10, text_feature="tags")
    assert retrieval.n_images == 30 and np.array_equal(retrieval.features["tags"].rows([29]), y[[29]])
    with pytest.raises(ValueError, match="query_size"):
        load_nus_wide(root=tmp_path, query_size=40)


def test_nus_wide_h5_and_mismatched_counts(tmp_path):
    x, y, labels = nus_arrays()
    with h5py.File(tmp_path / "nus-wide-10k.h5", "w") as handle:
        handle["XAll"], handle["YAll"], handle["LAll"] = x, y[:29], labels
    with pytest.raises(LabelError, match=r"YAll \(texts\) has 29 rows but LAll has 30"):
        load_nus_wide(root=tmp_path)
    with pytest.raises(MissingInputError, match=r"nus-wide-10k\.mat"):
        load_nus_wide(root=tmp_path / "empty")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["XAll"], handle["YAll"], handle["LAll"] = x, y, labels
        handle["indexQuery"] = np.array([1, 2])
    corpus = load_nus_wide(root=tmp_path, file="other.h5")
    assert corpus.image_ids == ["0", "1"] and corpus.meta["split_from"] == "index vectors in the file"
    with pytest.raises(DataFormatError, match="not the retrieval one"):
        load_nus_wide(root=tmp_path, file="other.h5", split="retrieval")
