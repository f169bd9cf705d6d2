"""fico bench search: FAISS flat / HNSW / binary flat / binary IVF and the engine, checked by brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from fico_registry.errors import OptionError  # noqa: E402
from fico_registry.studies.search import (  # noqa: E402
    Binariser,
    StudySettings,
    _flat_bytes,
    _hnsw_bytes,
    _ivf_bytes,
    engine_search,
    hamming_distances,
    hamming_recall,
    overlap_recall,
    synthetic_study,
    synthetic_vectors,
    task_recall,
)

INDEX_KEYS = {"build_s", "search_s", "recall", "bytes"}


def brute_hamming(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """All distances from unpacked bits: the slowest, plainest possible oracle."""
    q = np.unpackbits(queries, axis=1).astype(np.int64)
    d = np.unpackbits(database, axis=1).astype(np.int64)
    return (q[:, None, :] != d[None, :, :]).sum(-1)


@pytest.fixture(scope="module")
def study():
    settings = StudySettings(ks=(1, 10, 100), bits=32, max_queries=300, ef_search=(8, 16, 32, 64), nprobe=(1, 4, 64))
    return synthetic_study(400, 2000, 48, settings)


def test_synthetic_vectors_are_unit_clustered_and_paired():
    images, texts, c2i = synthetic_vectors(50, 250, 32, seed=3)
    assert images.shape == (50, 32) and texts.shape == (250, 32) and images.dtype == np.float32
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    assert np.array_equal(c2i, np.repeat(np.arange(50), 5))
    # a caption is closer to its own image than to a random one, on average
    own = (texts * images[c2i]).sum(1).mean()
    other = (texts * images[(c2i + 17) % 50]).sum(1).mean()
    assert own > other + 0.1
    again = synthetic_vectors(50, 250, 32, seed=3)
    assert np.array_equal(again[0], images) and np.array_equal(again[1], texts)
    rows = np.array([3, 100, 249])
    _, sampled, c2i_sampled = synthetic_vectors(50, 250, 32, seed=3, text_rows=rows)
    assert sampled.shape == (3, 32) and np.array_equal(c2i_sampled, c2i)


def test_json_keys_and_recall_relations(study):
    assert study["ks"] == [1, 10, 100] and study["n_database"] == 400 and study["n_queries"] == 300
    assert set(study["indexes"]) == {
        "flat-ip",
        "hnsw-flat",
        "fico-engine-ip",
        "binary-flat",
        "binary-ivf",
        "fico-engine-hamming",
    }
    for name, entry in study["indexes"].items():
        assert set(entry) >= INDEX_KEYS, name
        assert set(entry["recall"]) == {"1", "10", "100"}, name
        assert all(0 <= r <= 1 for r in entry["recall"].values())
        assert entry["build_s"] >= 0 and entry["search_s"] > 0 and entry["bytes"] > 0
    assert study["indexes"]["flat-ip"]["recall"] == {"1": 1.0, "10": 1.0, "100": 1.0}
    assert min(study["indexes"]["fico-engine-ip"]["recall"].values()) >= 0.999  # exact too (float rounding aside)
    # exhaustive search sees every ground-truth pair approximate search sees
    flat_task = study["indexes"]["flat-ip"]["task_recall"]
    assert flat_task["1"] <= flat_task["10"] <= flat_task["100"]
    assert study["indexes"]["binary-flat"]["recall"]["1"] < 1.0  # 32 bits lose information
    assert study["indexes"]["flat-ip"]["bytes"] == 400 * 48 * 4
    assert study["indexes"]["binary-flat"]["bytes"] == 400 * 32 // 8
    assert study["binarisation"]["method"] == "pca"
    json.dumps(study)


def test_hnsw_keeps_95_percent_of_flat_r1(study):
    hnsw = study["indexes"]["hnsw-flat"]
    assert hnsw["target"]["met"] and hnsw["recall"]["1"] >= 0.95
    assert hnsw["params"]["M"] == 32 and hnsw["params"]["efSearch"] in (8, 16, 32, 64)
    # the chosen efSearch is the smallest of the sweep that meets the target
    passing = [p["efSearch"] for p in hnsw["sweep"] if p["recall"]["1"] >= 0.95]
    assert hnsw["params"]["efSearch"] == min(passing)
    assert [p["efSearch"] for p in hnsw["sweep"]] == [8, 16, 32, 64]


def test_binary_indexes_agree_with_bruteforce_hamming():
    images, texts, _ = synthetic_vectors(300, 600, 40, seed=1)
    binariser = Binariser.fit(images, 32)
    db, q = binariser.codes(images), binariser.codes(texts[:80])
    truth = brute_hamming(q, db)
    k = 20
    kth = np.sort(truth, axis=1)[:, k - 1]

    flat = faiss.IndexBinaryFlat(32)
    flat.add(db)
    distances, ids = flat.search(q, k)
    assert np.array_equal(np.sort(distances, axis=1), np.sort(truth, axis=1)[:, :k])
    assert np.array_equal(hamming_distances(q, db, ids), np.take_along_axis(truth, ids, axis=1))

    scores, engine_ids = engine_search(db, q, k, "hamming", 32)
    assert np.array_equal(-scores.astype(np.int64), np.sort(truth, axis=1)[:, :k])
    assert hamming_recall(hamming_distances(q, db, engine_ids), kth, k) == 1.0

    ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(32), 32, 8)
    ivf.train(db)
    ivf.add(db)
    ivf.nprobe = 8  # every list: exhaustive
    distances, ids = ivf.search(q, k)
    assert np.array_equal(np.sort(distances, axis=1), np.sort(truth, axis=1)[:, :k])
    ivf.nprobe = 1
    _, ids = ivf.search(q, k)
    partial = hamming_recall(hamming_distances(q, db, ids), kth, k)
    assert 0 < partial <= 1


def test_study_binary_entries_are_exact_where_they_should_be(study):
    idx = study["indexes"]
    assert idx["binary-flat"]["distances_match_bruteforce"]
    assert idx["binary-flat"]["hamming_recall"] == {"1": 1.0, "10": 1.0, "100": 1.0}
    assert idx["fico-engine-hamming"]["hamming_recall"] == {"1": 1.0, "10": 1.0, "100": 1.0}
    ivf = idx["binary-ivf"]
    assert ivf["sweep_param"] == "nprobe" and ivf["params"]["nlist"] == 10  # min(sqrt(400), 400 // 39)
    assert [p["nprobe"] for p in ivf["sweep"]] == [1, 4, 10]  # 64 capped at nlist
    assert ivf["sweep"][-1]["hamming_recall"]["100"] == 1.0  # nprobe = nlist is exhaustive


def test_engine_inner_product_matches_faiss_flat():
    images, texts, _ = synthetic_vectors(200, 400, 24, seed=2)
    flat = faiss.IndexFlatIP(24)
    flat.add(images)
    distances, ids = flat.search(texts, 7)
    scores, engine_ids = engine_search(images, texts, 7, "inner_product")
    assert np.allclose(scores, distances, atol=1e-5)
    assert overlap_recall(engine_ids, ids, 7) >= 0.999


def test_recall_helpers_by_hand():
    found = np.array([[1, 2, 3], [4, 5, -1]])
    reference = np.array([[3, 2, 9], [6, 7, 8]])
    assert overlap_recall(found, reference, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert overlap_recall(found, reference, 1) == 0.0
    # t2i: caption rows 0 and 7 belong to images 0 and 1
    c2i = np.repeat(np.arange(4), 5)
    assert task_recall(np.array([[0, 3], [2, 1]]), np.array([0, 7]), c2i, "t2i", 1) == 0.5
    assert task_recall(np.array([[0, 3], [2, 1]]), np.array([0, 7]), c2i, "t2i", 2) == 1.0
    # i2t: image 1 owns captions 5..9
    assert task_recall(np.array([[12, 6]]), np.array([1]), c2i, "i2t", 1) == 0.0
    assert task_recall(np.array([[12, 6]]), np.array([1]), c2i, "i2t", 2) == 1.0
    assert hamming_recall(np.array([[0, 2, 3]]), np.array([2]), 3) == pytest.approx(2 / 3)


def test_binariser_methods_and_checks():
    images, _, _ = synthetic_vectors(300, 300, 40, seed=4)
    pca = Binariser.fit(images, 16)
    assert pca.codes(images).shape == (300, 2) and pca.codes(images).dtype == np.uint8
    assert np.allclose(pca.projection.T @ pca.projection, np.eye(16), atol=1e-4)  # orthonormal directions
    random = Binariser.fit(images, 64, "random")
    assert random.codes(images).shape == (300, 8) and "random" in random.describe()["description"].lower()
    with pytest.raises(OptionError, match="multiple of 8"):
        Binariser.fit(images, 12)
    with pytest.raises(OptionError, match="PCA"):
        Binariser.fit(images, 48)  # more bits than dimensions
    with pytest.raises(OptionError):
        Binariser.fit(images, 16, "itq")


def test_index_bytes_match_faiss_serialisation():
    images, _, _ = synthetic_vectors(500, 500, 32, seed=5)
    flat = faiss.IndexFlatIP(32)
    flat.add(images)
    hnsw = faiss.IndexHNSWFlat(32, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(images)
    codes = Binariser.fit(images, 32).codes(images)
    ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(32), 32, 10)
    ivf.train(codes)
    ivf.add(codes)
    for ours, serialised in (
        (_flat_bytes(flat), faiss.serialize_index(flat).size),
        (_hnsw_bytes(hnsw), faiss.serialize_index(hnsw).size),
        (_ivf_bytes(ivf), faiss.serialize_index_binary(ivf).size),
    ):
        assert 0 <= serialised - ours < 1024  # the file adds only a header


def test_cli_search_synthetic_and_user_embeddings(tmp_path):
    from click.testing import CliRunner

    from fico_registry.cli.main import cli

    out = tmp_path / "search.json"
    args = ["bench", "search", "--sizes", "200x1000", "--dim", "32", "--bits", "16", "--ks", "1,10",
            "--max-queries", "150", "--ef-search", "16,64", "--nprobe", "1,8", "--json", str(out),
            "--plots", str(tmp_path / "plots")]  # fmt: skip
    result = CliRunner().invoke(cli, args, obj={})
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["fico_bench"] == "search" and "cpu" in doc["hardware"]
    (res,) = doc["results"]
    assert res["n_database"] == 200 and res["n_queries"] == 150 and res["data"]["n_queries_total"] == 1000
    assert all(set(e) >= INDEX_KEYS for e in res["indexes"].values())
    assert list((tmp_path / "plots").glob("search_*.png"))
    assert "HNSW target" in result.output

    images, texts, c2i = synthetic_vectors(100, 500, 16, seed=9)
    np.save(tmp_path / "img.npy", images * 3)  # not unit length: the study normalises
    np.save(tmp_path / "txt.npy", texts)
    np.save(tmp_path / "c2i.npy", c2i)
    result = CliRunner().invoke(
        cli,
        ["bench", "search", "--embeddings", str(tmp_path / "img.npy"), str(tmp_path / "txt.npy"), "--caption-to-image",
         str(tmp_path / "c2i.npy"), "--bits", "16", "--ks", "1,10", "--direction", "i2t", "--json", str(out)],
        obj={},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (res,) = json.loads(out.read_text())["results"]
    assert res["direction"] == "i2t" and res["n_database"] == 500 and res["n_queries"] == 100
    assert res["indexes"]["flat-ip"]["recall"]["1"] == 1.0 and "task_recall" in res["indexes"]["flat-ip"]
