"""Results schema: validation, strict JSON (no NaN), from_report, MTEB and CLIP_benchmark exporters."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fico_registry.errors import DataFormatError
from fico_registry.evaluator.evaluate import evaluate_embeddings, evaluate_similarity
from fico_registry.evaluator.report import Report
from fico_registry.results.record import (
    RunResult,
    check_http_url,
    clip_benchmark_filename,
    detect_hardware,
    from_report,
    loads_strict,
    mteb_task_name,
    package_versions,
    read_result,
    result_from_dict,
    to_clip_benchmark,
    to_mteb,
    write_clip_benchmark,
    write_mteb,
    write_result,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from fico_registry.data import synthetic

    return synthetic(n_images=20, seed=5, root=tmp_path_factory.mktemp("results-corpus"), split="test")


@pytest.fixture(scope="module")
def report(corpus) -> Report:
    rng = np.random.default_rng(0)
    img = rng.standard_normal((corpus.n_images, 12)).astype(np.float32)
    txt = img[corpus.caption_to_image] + rng.standard_normal((corpus.n_captions, 12)).astype(np.float32)
    return evaluate_embeddings(img, txt, corpus.caption_to_image, corpus.labels, device="cpu", progress=False)


@pytest.fixture(scope="module")
def result(report, corpus) -> RunResult:
    return from_report(
        report,
        model={"name": "my-model", "family": "fg", "url": "https://example.org/m"},
        corpus=corpus,
        submitter="tester",
    )


def test_from_report_carries_metrics_settings_and_corpus(result, report, corpus) -> None:
    assert result.metrics.instance == report.to_dict()["instance"]
    assert result.metrics.category == report.to_dict()["category"]
    assert result.corpus.content_hash == corpus.content_hash
    assert (result.corpus.dataset, result.corpus.split) == (corpus.name, corpus.split)
    assert (result.corpus.n_images, result.corpus.n_texts, result.corpus.n_classes) == (20, 100, corpus.labels.shape[1])
    s = result.settings
    assert (s.measure, s.ties, s.map_variant) == ("cosine", "expected", "fico")
    assert (s.recall_ks, s.map_ks) == ([1, 5, 10], [10, 100, None])
    assert result.model.name == "my-model" and result.model.family == "fg"
    assert result.date.tzinfo is not None
    assert "numpy" in result.packages and result.tool_version
    assert result.hardware.cpu_count and result.hardware.python


def test_json_round_trip(result, tmp_path) -> None:
    path = write_result(result, tmp_path / "r.json")
    again = read_result(path)
    assert again == result
    assert json.loads(path.read_text())["schema_version"] == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_read_refuses_nan_and_infinity(result, tmp_path, literal) -> None:
    text = result.to_json().replace('"MeanR": ', f'"MeanR": {literal}, "_was": ', 1)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataFormatError, match="not valid strict JSON"):
        read_result(path)
    with pytest.raises(DataFormatError, match=literal.lstrip("-")):
        loads_strict(f'{{"x": {literal}}}')


def test_nan_in_a_report_becomes_null_never_nan(report, corpus) -> None:
    broken = copy.deepcopy(report)
    broken.instance["i2t"]["MeanR"] = float("nan")
    res = from_report(broken, model={"name": "m"}, corpus=corpus)
    assert res.metrics.instance["i2t"]["MeanR"] is None
    text = res.to_json()
    assert "NaN" not in text and '"MeanR": null' in text


def _doc(result: RunResult) -> dict:
    return json.loads(result.to_json())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["metrics"]["instance"]["i2t"].__setitem__("R@1", 95.0), "fraction"),
        (lambda d: d["metrics"]["instance"]["t2i"].__setitem__("MedR", 0.5), "1-based rank"),
        (lambda d: d["metrics"]["instance"]["i2t"].pop("R@5"), "missing R@5"),
        (lambda d: d["metrics"]["instance"]["i2t"].__setitem__("R@50", 0.9), "unexpected R@50"),
        (lambda d: d["metrics"]["instance"].pop("t2i"), "both directions"),
        (lambda d: d["metrics"]["category"]["i2t"].__setitem__("PR11", [0.5] * 10), "11 precisions"),
        (lambda d: d["metrics"]["category"]["i2t"].__setitem__("mAP@10", -0.1), "fraction"),
        (lambda d: d.__setitem__("surprise", 1), "Extra inputs"),
        (lambda d: d["model"].__setitem__("url", "javascript:alert(1)"), "http"),
        (lambda d: d["model"].__setitem__("name", ""), "at least 1 character"),
        (lambda d: d["model"].__setitem__("name", "bad\x00name"), "control characters"),
        (lambda d: d["model"].__setitem__("family", "llm"), "family"),
        (lambda d: d["corpus"].__setitem__("content_hash", "abc"), "content_hash"),
        (lambda d: d["settings"].__setitem__("ties", "random"), "ties"),
        (lambda d: d.__setitem__("date", "2024-01-01T00:00:00"), "timezone"),
        (lambda d: d["settings"].__setitem__("map_ks", [10]), "mAP@10"),
    ],
)
def test_schema_errors_name_the_field(result, edit, message) -> None:
    doc = _doc(result)
    edit(doc)
    with pytest.raises(DataFormatError, match=message):
        result_from_dict(doc)


def test_format_and_version_are_checked(result) -> None:
    doc = _doc(result)
    doc["schema_version"] = 2
    with pytest.raises(DataFormatError, match="newer"):
        result_from_dict(doc)
    doc = _doc(result)
    doc["format"] = "mteb"
    with pytest.raises(DataFormatError, match="not a fico result"):
        result_from_dict(doc)
    with pytest.raises(DataFormatError, match="JSON object"):
        result_from_dict([1, 2])


def test_read_refuses_oversized_and_non_utf8(result, tmp_path) -> None:
    path = tmp_path / "big.json"
    path.write_text(result.to_json())
    with pytest.raises(DataFormatError, match="over the"):
        read_result(path, max_bytes=100)
    path.write_bytes(b'{"format": "\xff"}')
    with pytest.raises(DataFormatError, match="UTF-8"):
        read_result(path)


@pytest.mark.parametrize("url", ["https://example.org/a?b=1&c=2", "http://x.y"])
def test_http_urls_pass(url) -> None:
    assert check_http_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,<b>",
        "//evil.org/x",
        "/relative",
        "https://a b",
        "vbscript:x",
        "https://",
    ],
)
def test_other_urls_are_refused(url) -> None:
    with pytest.raises(ValueError):
        check_http_url(url)


def test_evidence_block_is_validated(result) -> None:
    good = {
        "kind": "embeddings",
        "images": {
            "file": "images.npy",
            "format": "npy",
            "sha256": "a" * 64,
            "shape": [20, 12],
            "dtype": "float32",
            "bytes": 1088,
        },
        "texts": {
            "file": "texts.npy",
            "format": "npy",
            "sha256": "b" * 64,
            "shape": [100, 12],
            "dtype": "float32",
            "bytes": 4928,
        },
    }
    doc = _doc(result)
    doc["evidence"] = good
    assert result_from_dict(doc).evidence.images.file == "images.npy"
    for bad_name, message in (
        ("../images.npy", "plain file name"),
        ("sub/images.npy", "plain file name"),
        ("/etc/passwd", "plain file name"),
        ("images.pkl", "must end in .npy"),
    ):
        doc = _doc(result)
        doc["evidence"] = copy.deepcopy(good)
        doc["evidence"]["images"]["file"] = bad_name
        with pytest.raises(DataFormatError, match=message):
            result_from_dict(doc)
    doc = _doc(result)
    doc["evidence"] = {"kind": "embeddings", "images": good["images"]}
    with pytest.raises(DataFormatError, match="exactly images and texts"):
        result_from_dict(doc)
    doc = _doc(result)
    doc["evidence"] = good
    doc["model"]["output"] = "binary"
    with pytest.raises(DataFormatError, match=r"model\.output"):
        result_from_dict(doc)


def test_similarity_report_without_labels(corpus) -> None:
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((corpus.n_images, corpus.n_captions)).astype(np.float32)
    report = evaluate_similarity(scores, corpus.caption_to_image, device="cpu", progress=False)
    res = from_report(report, model={"name": "sim"}, corpus=corpus)
    assert res.metrics.category is None and res.settings.map_ks == [] and res.settings.measure == "precomputed"
    assert result_from_dict(_doc(res)) == res


def test_from_report_of_a_full_evaluation_keeps_provenance_and_costs(corpus) -> None:
    from fico_registry.evaluator.evaluate import evaluate
    from fico_registry.models.loading import load_model

    report = evaluate(
        load_model("reference-dual", config="tiny", device="cpu"), corpus, cache=False, batch_size=8, progress=False
    )
    res = from_report(report)
    assert res.model.name == "reference-dual" and res.model.family == "fg" and res.model.output == "continuous"
    assert res.model.distribution == "fico-registry" and res.model.version and res.model.config_name == "tiny"
    assert res.model.config["embed_dim"] == 16
    assert res.corpus.content_hash == corpus.content_hash
    assert res.costs.encode["images"].items == corpus.n_images and res.costs.encode["texts"].items == corpus.n_captions
    assert res.settings.batch_size == 8
    assert "fico-registry" in res.packages


def test_from_report_needs_a_name_and_a_corpus(report, corpus) -> None:
    with pytest.raises(DataFormatError, match="names no corpus"):
        from_report(report, model={"name": "m"})
    with pytest.raises(DataFormatError, match="names no model"):
        from_report(report, corpus=corpus)
    with pytest.raises(DataFormatError, match=r"model\.url"):
        from_report(report, corpus=corpus, model={"name": "m", "url": "javascript:alert(1)"})


def test_mteb_export(result, tmp_path) -> None:
    docs = to_mteb(result)
    assert set(docs) == {"FicoSyntheticI2TRetrieval", "FicoSyntheticT2IRetrieval"}
    t2i = docs[mteb_task_name(result, "t2i")]
    assert t2i["dataset_revision"] == result.corpus.content_hash
    assert set(t2i) == {
        "dataset_revision",
        "task_name",
        "mteb_version",
        "scores",
        "evaluation_time",
        "kg_co2_emissions",
        "date",
    }
    (scores,) = t2i["scores"]["test"]
    for k in (1, 5, 10):
        assert scores[f"hit_rate_at_{k}"] == result.metrics.instance["t2i"][f"R@{k}"]
    assert scores["main_score"] == result.metrics.instance["t2i"]["R@1"]
    assert scores["hf_subset"] == "default" and scores["languages"] == ["eng-Latn"]
    assert scores["fico_category_map_at_n"] == result.metrics.category["t2i"]["mAP@N"]
    assert math.isclose(t2i["date"], result.date.timestamp())
    assert "recall_at_1" not in scores  # MTEB's recall_at_k is true recall, a different quantity
    written = write_mteb(result, tmp_path / "mteb")
    names = sorted(p.name for p in written)
    assert names == ["FicoSyntheticI2TRetrieval.json", "FicoSyntheticT2IRetrieval.json", "model_meta.json"]
    assert written[0].parent.parent.name == "my-model"
    meta = json.loads((written[0].parent / "model_meta.json").read_text())
    assert (
        meta["name"] == "my-model"
        and meta["similarity_fn_name"] == "cosine"
        and meta["reference"] == "https://example.org/m"
    )


def test_mteb_names_known_datasets(result) -> None:
    coco = result.model_copy(update={"corpus": result.corpus.model_copy(update={"dataset": "coco"})})
    assert mteb_task_name(coco, "i2t") == "FicoMSCOCOI2TRetrieval"


def test_clip_benchmark_export(result, tmp_path) -> None:
    doc = to_clip_benchmark(result)
    assert doc["task"] == "zeroshot_retrieval" and doc["dataset"] == "synthetic" and doc["model"] == "my-model"
    assert doc["language"] == "en"
    for k in (1, 5, 10):
        # CLIP_benchmark: image retrieval = text -> image, text retrieval = image -> text
        assert doc["metrics"][f"image_retrieval_recall@{k}"] == result.metrics.instance["t2i"][f"R@{k}"]
        assert doc["metrics"][f"text_retrieval_recall@{k}"] == result.metrics.instance["i2t"][f"R@{k}"]
    assert clip_benchmark_filename(result) == "synthetic_none_my-model_en_zeroshot_retrieval.json"
    path = write_clip_benchmark(result, tmp_path)
    assert json.loads(Path(path).read_text()) == doc


def test_hardware_and_packages() -> None:
    hw = detect_hardware("cpu")
    assert hw.device == "cpu" and hw.cpu_count >= 1
    versions = package_versions(["surely-not-installed-package"])
    assert "numpy" in versions and "surely-not-installed-package" not in versions


def test_rsum(result) -> None:
    expected = 100 * sum(result.metrics.instance[d][f"R@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert math.isclose(result.rsum(), expected)
