"""Precomputed feature files: .npy / .h5 / .mat (v5, v7.3), region layouts, alignment, fingerprints."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from fico_registry.data import (
    Corpus,
    attach_region_features,
    file_fingerprint,
    find_region_features,
    open_feature_array,
    read_matrix,
    region_rows_index,
)
from fico_registry.errors import DataFormatError, MissingInputError

sys.path.insert(0, str(Path(__file__).parent))
from test_data_labels import write_mat73


def corpus_of(n: int = 4, per_image: int = 5) -> Corpus:
    return Corpus(
        name="toy",
        split="test",
        image_ids=[f"img{i}" for i in range(n)],
        captions=[f"c{i}-{k}" for i in range(n) for k in range(per_image)],
        caption_to_image=np.repeat(np.arange(n), per_image),
        caption_ids=[f"img{i}#{k}" for i in range(n) for k in range(per_image)],
    )


def test_npy_is_memory_mapped(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "a.npy", data)
    array = open_feature_array(tmp_path / "a.npy")
    assert isinstance(array, np.memmap) and np.array_equal(array, data)
    with pytest.raises(DataFormatError, match="one array"):
        open_feature_array(tmp_path / "a.npy", key="x")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match="not a plain numeric"):
        open_feature_array(tmp_path / "obj.npy")
    with pytest.raises(MissingInputError):
        open_feature_array(tmp_path / "none.npy")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataFormatError, match="unsupported"):
        open_feature_array(tmp_path / "x.csv")


def test_h5_contiguous_is_mapped_chunked_is_read(tmp_path):
    data = np.random.default_rng(0).random((5, 4096)).astype(np.float32)
    with h5py.File(tmp_path / "f.h5", "w") as handle:
        handle["XAll"] = data
        handle.create_dataset("YAll", data=data[:, :300], chunks=(2, 300), compression="gzip")
    x = open_feature_array(tmp_path / "f.h5", "XAll")
    y = open_feature_array(tmp_path / "f.h5", "YAll")
    assert isinstance(x, np.memmap) and np.array_equal(x, data)
    assert np.array_equal(y, data[:, :300])
    with pytest.raises(DataFormatError, match="several arrays"):
        open_feature_array(tmp_path / "f.h5")


def test_mat_v5_and_v73_give_the_same_rows(tmp_path):
    vgg = np.random.default_rng(1).random((6, 4096))
    regions = np.random.default_rng(2).random((3, 4, 8)).astype(np.float32)
    scipy.io.savemat(tmp_path / "v5.mat", {"XAll": vgg, "R": regions})
    write_mat73(tmp_path / "v73.mat", {"XAll": vgg, "R": regions})
    for name in ("v5.mat", "v73.mat"):
        assert np.array_equal(read_matrix(tmp_path / name, "XAll"), vgg), name
        assert np.array_equal(open_feature_array(tmp_path / name, "R"), regions), name
    # the v7.3 dataset is mapped (transposed view), not read
    assert isinstance(open_feature_array(tmp_path / "v73.mat", "XAll").base, np.memmap)
    # an h5 file written by MATLAB-like tools can be read the other way round on request
    assert open_feature_array(tmp_path / "v73.mat", "XAll", transposed=False).shape == (4096, 6)


def test_region_rows_index_both_precomp_layouts():
    per_image = np.random.default_rng(0).random((4, 3, 2)).astype(np.float32)
    assert region_rows_index(per_image, 4) is None
    per_caption = np.repeat(per_image, 5, axis=0)
    assert region_rows_index(per_caption, 4).tolist() == [0, 5, 10, 15]
    with pytest.raises(DataFormatError, match="rows 0 and 1 differ"):
        region_rows_index(np.random.default_rng(1).random((8, 3, 2)), 4)
    with pytest.raises(MissingInputError, match="7 rows but the corpus has 4 images"):
        region_rows_index(np.zeros((7, 3, 2)), 4)


def test_with_features_by_order_ids_index_and_errors(tmp_path):
    corpus = corpus_of(4)
    regions = np.random.default_rng(3).random((4, 36, 16)).astype(np.float32)
    np.save(tmp_path / "test_ims.npy", regions)
    by_order = corpus.with_features("regions", tmp_path / "test_ims.npy")
    assert np.array_equal(by_order.features["regions"].rows(slice(1, 3)), regions[1:3])
    assert by_order.features["regions"].shape == (4, 36, 16)
    by_ids = corpus.with_features("regions", tmp_path / "test_ims.npy", ids=["img3", "img2", "img1", "img0"])
    assert np.array_equal(by_ids.features["regions"].rows([0]), regions[[3]])
    by_index = corpus.with_features("regions", tmp_path / "test_ims.npy", index=[1, 1, 0, 2])
    assert np.array_equal(by_index.features["regions"].rows([0, 2]), regions[[1, 0]])
    with pytest.raises(MissingInputError, match="index values"):
        corpus.with_features("r", tmp_path / "test_ims.npy", index=[0, 1, 2, 9])
    with pytest.raises(MissingInputError, match="corpus ids are not in the file"):
        corpus.with_features("r", tmp_path / "test_ims.npy", ids=["a", "b", "c", "d"])
    # text features: one row per caption; 5 per image with the corpus holding 6 for one image
    doc2vec = np.random.default_rng(4).random((20, 300)).astype(np.float32)
    np.save(tmp_path / "doc2vec.npy", doc2vec)
    texts = corpus.with_features("doc2vec", tmp_path / "doc2vec.npy", modality="text")
    assert np.array_equal(texts.features["doc2vec"].rows([19]), doc2vec[[19]])
    uneven = Corpus(
        name="toy",
        split="test",
        image_ids=corpus.image_ids,
        captions=[*corpus.captions, "extra"],
        caption_to_image=np.append(corpus.caption_to_image, 0),
    )
    with pytest.raises(MissingInputError, match="captions_per_image=5"):
        uneven.with_features("doc2vec", tmp_path / "doc2vec.npy", modality="text")
    with pytest.raises(ValueError, match="modality"):
        corpus.with_features("x", tmp_path / "doc2vec.npy", modality="audio")


def test_attach_region_features_with_ids_file_and_shape_check(tmp_path):
    corpus = corpus_of(3)
    regions = np.random.default_rng(5).random((3, 36, 8)).astype(np.float32)
    np.save(tmp_path / "dev_feat.npy", regions[[2, 0, 1]])
    (tmp_path / "dev_ids.txt").write_text("img2\nimg0\nimg1\n")
    assert find_region_features(tmp_path, ["test", "dev"]) == tmp_path / "dev_feat.npy"
    assert find_region_features(tmp_path, ["train"]) is None
    attached = attach_region_features(corpus, tmp_path / "dev_feat.npy", ids=tmp_path / "dev_ids.txt")
    assert np.array_equal(attached.features["regions"].rows(np.arange(3)), regions)
    (tmp_path / "bad_ids.txt").write_text("img2\nimg0\n")
    with pytest.raises(MissingInputError, match="do not line up"):
        attach_region_features(corpus, tmp_path / "dev_feat.npy", ids=tmp_path / "bad_ids.txt")
    np.save(tmp_path / "flat.npy", np.zeros((3, 2048), dtype=np.float32))
    with pytest.raises(DataFormatError, match="36, 2048"):
        attach_region_features(corpus, tmp_path / "flat.npy")


def test_fingerprint_changes_with_content_and_index(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 8), dtype=np.float32))
    before = file_fingerprint(tmp_path / "a.npy")
    np.save(tmp_path / "a.npy", np.ones((4, 8), dtype=np.float32))
    assert file_fingerprint(tmp_path / "a.npy") != before
    corpus = corpus_of(4)
    one = corpus.with_features("f", tmp_path / "a.npy").features["f"].fingerprint()
    two = corpus.with_features("f", tmp_path / "a.npy", index=[3, 2, 1, 0]).features["f"].fingerprint()
    assert one != two
