"""Issue 17: edge inputs give exact numbers (checked against brute force) or typed errors that name the fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fico_registry import evaluate_embeddings, evaluate_similarity
from fico_registry.errors import (
    DataFormatError,
    DTypeError,
    LabelError,
    MemoryBudgetError,
    NonFiniteError,
    OptionError,
    ShapeError,
)
from fico_registry.evaluator import reference as bruteforce
from fico_registry.runtime.sizes import parse_size

CPU = {"device": "cpu", "progress": False}
LABELS = np.array([[1, 0], [0, 1], [1, 1]])
C2I = np.array([0, 1, 2, 0])


def _assert_matches(report, expected, ties="expected"):
    for direction, want in expected.items():
        for name, value in want["instance"].items():
            if not (name == "MedR" and ties == "expected"):  # MedR's expectation is being redefined (issue 17)
                assert report.instance[direction][name] == pytest.approx(value, abs=1e-12), (direction, name)
        for name, value in (want["category"] or {}).items():
            assert np.allclose(report.category[direction][name], value, atol=1e-12), (direction, name)


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
def test_int64_scores_beyond_2_62_are_exact(ties):
    big = 2**62
    i2t = np.array(
        [
            [big + 5, big + 1, -big - 3, big + 5],
            [big + 2, big + 9, big + 2, -(2**63)],
            [-big - 9, big + 3, -big - 8, 2**63 - 1],
        ],
        dtype=np.int64,
    )
    kw = {"recall_ks": (1, 2), "map_ks": (1, None), "ties": ties}
    report = evaluate_similarity(i2t, C2I, labels=LABELS, **kw, **CPU)
    _assert_matches(report, bruteforce.evaluate(bruteforce.exact_matrix(i2t), C2I, labels=LABELS, **kw), ties)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_unsigned_scores_are_ranked_exactly(dtype):
    top = np.iinfo(dtype).max
    i2t = np.array([[top, 7, 0, top], [5, top - 1, 5, 0], [2**15, 3, top, 1]], dtype=dtype)
    kw = {"recall_ks": (1, 2), "map_ks": (2, None), "ties": "expected"}
    report = evaluate_similarity(i2t, C2I, labels=LABELS, **kw, **CPU)
    _assert_matches(report, bruteforce.evaluate(bruteforce.exact_matrix(i2t), C2I, labels=LABELS, **kw))


@pytest.mark.parametrize("measure", ["inner_product", "euclidean", "maxsim"])
@pytest.mark.parametrize("exponent", [100, -100, 0])
def test_float32_embeddings_that_overflow_or_underflow_are_exact(measure, exponent):
    rng = np.random.default_rng(1)
    shape = (3, 2, 4) if measure == "maxsim" else (3, 4)
    images = np.ldexp(rng.integers(-3, 4, shape).astype(np.float64), exponent).astype(np.float32)
    texts = np.ldexp(rng.integers(-3, 4, (4, 4)).astype(np.float64), exponent).astype(np.float32)
    assert np.isfinite(images).all() and np.isfinite(texts).all()
    kw = {"recall_ks": (1, 2), "map_ks": (None,), "ties": "optimistic"}
    report = evaluate_embeddings(images, texts, C2I, LABELS, measure=measure, **kw, **CPU)
    scores = bruteforce.embedding_scores(images, texts, measure)
    _assert_matches(report, bruteforce.evaluate(scores, C2I, labels=LABELS, **kw), "optimistic")
    if exponent:
        assert "rescaled_by_powers_of_two" in report.settings


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_is_scale_invariant_below_the_normalisation_eps(dtype):
    rng = np.random.default_rng(2)
    images, texts = rng.standard_normal((3, 5)).astype(dtype), rng.standard_normal((4, 5)).astype(dtype)
    base = evaluate_embeddings(images, texts, C2I, LABELS, **CPU)
    tiny = np.finfo(dtype).tiny * 4  # norms far below 1e-12 (and subnormal-adjacent)
    scaled = evaluate_embeddings(
        images * tiny, texts * np.array([[1e-30], [1.0], [2.0**60], [3e-15]], dtype=dtype), C2I, LABELS, **CPU
    )
    assert scaled.instance == base.instance and scaled.category == base.category
    with pytest.raises(NonFiniteError, match=r"all-zero embeddings.*row 1"):
        evaluate_embeddings(images, np.vstack([texts[:1], np.zeros((1, 5), dtype), texts[2:]]), C2I, **CPU)


def test_huge_cosine_vectors_are_not_called_all_zero():
    images = np.full((3, 4), 3e38, dtype=np.float32) * np.array([[1], [-1], [0.5]], dtype=np.float32)
    texts = np.eye(4, dtype=np.float32) * 1e38
    report = evaluate_embeddings(images, texts, C2I, **CPU)
    assert 0 <= report.instance["i2t"]["R@1"] <= 1


def test_packed_hamming_ignores_padding_bits():
    rng = np.random.default_rng(3)
    bits = 11
    img_on, txt_on = rng.integers(0, 2, (3, bits)).astype(bool), rng.integers(0, 2, (4, bits)).astype(bool)
    img, txt = np.packbits(img_on, axis=1), np.packbits(txt_on, axis=1)
    img[:, -1] |= 0b00011111  # garbage in the 5 padding bits
    txt[:, -1] |= rng.integers(0, 32, 4).astype(np.uint8)
    kw = {"recall_ks": (1, 2), "map_ks": (None,), "ties": "expected"}
    packed = evaluate_embeddings(img, txt, C2I, LABELS, measure="hamming", bits=bits, **kw, **CPU)
    unpacked = evaluate_embeddings(img_on, txt_on, C2I, LABELS, measure="hamming", **kw, **CPU)
    assert packed.instance == unpacked.instance and packed.category == unpacked.category
    assert packed.settings["code_format"] == "packed bytes" and unpacked.settings["code_format"] == "unpacked bits"
    scores = bruteforce.embedding_scores(img_on, txt_on, "hamming")
    _assert_matches(packed, bruteforce.evaluate(scores, C2I, labels=LABELS, **kw))


def test_uint8_zero_one_codes_are_unpacked_bits():
    rng = np.random.default_rng(4)
    img, txt = rng.integers(0, 2, (3, 12)).astype(np.uint8), rng.integers(0, 2, (4, 12)).astype(np.uint8)
    report = evaluate_embeddings(img, txt, C2I, measure="hamming", **CPU)
    assert report.settings["bits"] == 12 and report.settings["code_format"] == "unpacked bits"
    as_bool = evaluate_embeddings(img.astype(bool), txt.astype(bool), C2I, measure="hamming", **CPU)
    assert report.instance == as_bool.instance


def test_labels_without_classes_are_refused():
    with pytest.raises(LabelError, match=r"zero classes.*labels=None"):
        evaluate_similarity(np.eye(3, 4), C2I, labels=np.zeros((3, 0)), **CPU)


def test_requires_grad_tensors_work_with_and_without_labels():
    images = torch.randn(3, 5, requires_grad=True)
    texts = torch.randn(4, 5, requires_grad=True)
    for labels in (None, torch.tensor(LABELS, dtype=torch.float32, requires_grad=True)):
        report = evaluate_embeddings(images, texts, torch.tensor(C2I), labels, **CPU)
        plain = evaluate_embeddings(images.detach(), texts.detach(), C2I, None if labels is None else LABELS, **CPU)
        assert report.instance == plain.instance and report.category == plain.category
    scores = (images @ texts.T).requires_grad_(True) if not images.requires_grad else images @ texts.T
    assert evaluate_similarity(scores, C2I, labels=LABELS, **CPU).category is not None


@pytest.mark.parametrize(
    ("images", "error", "fix"),
    [
        (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), DTypeError, "numeric array"),
        (np.array([[object()] * 2] * 3, dtype=object), DTypeError, "numeric array"),
        ([[1.0, 2.0], [3.0], [4.0, 5.0]], ShapeError, "equal-length rows"),
    ],
)
def test_non_numeric_or_ragged_embeddings_are_typed(images, error, fix):
    with pytest.raises(error, match=fix):
        evaluate_embeddings(images, np.ones((4, 2)), C2I, **CPU)


def test_recall_ks_bare_int_float_and_huge():
    report = evaluate_similarity(np.eye(3, 4), C2I, recall_ks=5, **CPU)
    assert list(report.instance["i2t"]) == ["R@5", "MedR", "MeanR"]
    with pytest.raises(OptionError, match=r"integer.*write 5"):
        evaluate_similarity(np.eye(3, 4), C2I, recall_ks=[5.0], **CPU)
    with pytest.raises(OptionError, match="too large"):
        evaluate_similarity(np.eye(3, 4), C2I, recall_ks=[2**63], **CPU)
    with pytest.raises(OptionError, match="None for the whole ranking"):
        evaluate_similarity(np.eye(3, 4), C2I, labels=LABELS, map_ks=[2**70], **CPU)


@pytest.mark.parametrize("device", ["tpu", "gpu", "", "cuda:99"])
def test_unknown_or_unavailable_devices_are_typed(device):
    with pytest.raises(OptionError, match="cpu"):
        evaluate_similarity(np.eye(3, 4), C2I, device=device)


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("-1GB", "positive"),
        ("0.5B", "less than one byte"),
        ("8", "8GB"),
        (30, "smallest memory_budget that works is 40 B"),
    ],
)
def test_memory_budget_messages_name_a_budget_that_works(budget, message):
    images, texts = np.ones((3, 4), np.float32), np.ones((4, 4), np.float32)
    with pytest.raises((OptionError, MemoryBudgetError), match=message) as info:
        evaluate_embeddings(images, texts, C2I, memory_budget=budget, **CPU)
    assert "0 MiB" not in str(info.value)
    if isinstance(budget, int):  # the budget it names does work
        evaluate_embeddings(images, texts, C2I, memory_budget=40, **CPU)


def test_memory_budget_below_one_row_names_the_row_size():
    with pytest.raises(MemoryBudgetError, match=r"smallest memory_budget that works is (\d+) B") as info:
        evaluate_similarity(np.eye(3, 4), C2I, labels=LABELS, map_ks=(None,), memory_budget=100, **CPU)
    assert "0 MiB" not in str(info.value)
    smallest = int(__import__("re").search(r"works is (\d+) B", str(info.value)).group(1))
    evaluate_similarity(np.eye(3, 4), C2I, labels=LABELS, map_ks=(None,), memory_budget=smallest, **CPU)


def test_one_size_rule_for_every_command():
    assert parse_size("512MB") == 512 << 20 and parse_size("1.5GiB") == 3 << 29 and parse_size(4096) == 4096
    assert parse_size("2097152") == 2 << 20  # a bare number is bytes
    from fico_registry.studies.costs import parse_memory_budget

    assert parse_memory_budget("8GB") == parse_size("8GB")
    for command in (["bench", "costs", "reference-dual"], ["evaluate-similarity", "--i2t", "x.npy"]):
        result = CliRunner().invoke(_cli(), [*command, "--memory-budget", "8"])
        assert result.exit_code == 2 and "8GB" in result.output, result.output


def _cli():
    from fico_registry.cli import cli

    return cli


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty \(0 bytes\)"),
        (b"\x00garbage bytes, not numpy", r"not a valid \.npy file"),
        (None, "0-d array"),
    ],
)
def test_cli_broken_npy_files_are_reported(tmp_path, content, message):
    from fico_registry.data.arrays import read_array

    bad = tmp_path / "bad.npy"
    if content is None:
        np.save(bad, np.float32(3.0))
    else:
        bad.write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        read_array(bad)
    np.save(tmp_path / "ok.npy", np.eye(3, dtype=np.float32))
    result = CliRunner().invoke(
        _cli(),
        ["evaluate-embeddings", "--images", str(bad), "--texts", str(tmp_path / "ok.npy"), "--captions-per-image", "1"],
    )
    assert result.exit_code == 2 and "Error:" in result.output and "Aborted" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_evaluate_commands_write_reports_with_out(tmp_path):
    np.save(tmp_path / "i2t.npy", np.eye(3, dtype=np.float32))
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        _cli(),
        ["evaluate-similarity", "--i2t", str(tmp_path / "i2t.npy"), "--captions-per-image", "1", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["instance"]["i2t"]["R@1"] == 1.0


def test_random_weights_are_seeded():
    pytest.importorskip("fico_imram")
    from fico_registry import load_model
    from fico_registry.plugin_api.testing import SAMPLE_CAPTIONS

    def text_outputs(seed):
        torch.manual_seed(1234 + seed)  # the global state must not matter
        out = load_model("imram", config="tiny", seed=seed).encoder.encode_texts(list(SAMPLE_CAPTIONS[:3]))
        values = out.values() if isinstance(out, dict) else [out]
        return torch.cat([v.flatten().float() for v in values if isinstance(v, torch.Tensor)])

    first, again, other = text_outputs(0), text_outputs(0), text_outputs(1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_fuzzed_inputs_give_exact_numbers_or_typed_errors():
    """The conformance check of fico_registry.plugin_api.testing, with a CI-sized example count."""
    from fico_registry.plugin_api.testing import check_evaluator_inputs

    check_evaluator_inputs(max_examples=25)


def test_fico_train_takes_saved_corpora_and_o(tmp_path):
    pytest.importorskip("fico_adv")
    from fico_registry.data import synthetic

    train = synthetic(n_images=24, split="train").save(tmp_path / "train")
    val = synthetic(n_images=8, split="val").save(tmp_path / "val")
    cli = _cli()
    for args, message in (
        (["--corpus", str(train)], "--val-corpus"),
        (["--corpus", str(train), "--val-corpus", str(val), "--dataset", "synthetic"], "not both"),
        (["--corpus", str(train), "--val-corpus", str(train)], "never sees training data"),
    ):
        result = CliRunner().invoke(cli, ["train", "adv-64", "--config", "tiny", *args, "-o", str(tmp_path / "x")])
        assert result.exit_code == 2 and message in result.output, result.output
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "adv-64",
            "--config",
            "tiny",
            "--corpus",
            str(train),
            "--val-corpus",
            str(val),
            "--epochs",
            "1",
            "--set",
            "batch_size=8",
            "-o",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["dataset"]["train_corpus"] == str(train) and "--corpus TEST_CORPUS" in record["evaluate"]


def test_identical_float32_candidates_get_identical_scores():
    """A float32 GEMM can score two copies of one vector differently (edge columns of a block run
    through another kernel); each distinct candidate is scored once, so copies tie exactly."""
    import torch

    from fico_registry.evaluator.sources import EmbeddingScores, candidate_columns, unique_candidates

    rng = np.random.default_rng(3)
    img = torch.from_numpy(rng.standard_normal((37, 48)).astype(np.float32))
    base = rng.standard_normal((301, 48)).astype(np.float32)
    txt = np.concatenate([base, base[[0, 5, 299, 300]], base[:1]])  # copies at the far edge
    source = unique_candidates(EmbeddingScores(img, torch.from_numpy(txt), "inner_product", "image"))
    assert source.candidate_rows is not None and source.n_candidates == len(txt)
    block = source.block(0, 37)
    for copy, original in ((301, 0), (302, 5), (303, 299), (304, 300), (305, 0)):
        assert torch.equal(block[:, copy], block[:, original])
    sliced = candidate_columns(source, 290, 306)
    assert torch.equal(sliced.block(0, 37), block[:, 290:306])
    t2i = unique_candidates(EmbeddingScores(torch.from_numpy(txt), img, "cosine", "text"))
    assert t2i.n_candidates == len(txt) and t2i.block(0, 37).shape == (37, len(txt))


def test_duplicate_captions_tie_exactly_in_reports():
    rng = np.random.default_rng(4)
    img = rng.standard_normal((20, 16)).astype(np.float32)
    txt = rng.standard_normal((60, 16)).astype(np.float32)
    txt[40:] = txt[:20]  # every caption of images 0..6 repeated as captions of other images
    c2i = np.repeat(np.arange(20), 3)
    for ties in ("optimistic", "pessimistic"):
        ours = evaluate_embeddings(img, txt, c2i, measure="cosine", ties=ties, progress=False).to_dict()["instance"]
        exact = img.astype(np.float64) / np.linalg.norm(img, axis=1, keepdims=True)
        unit = txt.astype(np.float64) / np.linalg.norm(txt, axis=1, keepdims=True)
        scores = exact @ unit.T
        scores[:, 40:] = scores[:, :20]  # the same vector: the same score, exactly
        want = evaluate_similarity(scores, c2i, ties=ties, progress=False).to_dict()["instance"]
        assert ours["i2t"] == pytest.approx(want["i2t"], abs=1e-12)


def test_evaluate_refuses_bad_metric_options_before_loading_the_model(monkeypatch):
    """Loading and encoding can take hours: a bad K or tie rule must be refused before either."""
    import fico_registry.models.loading as loading
    from fico_registry import evaluate
    from fico_registry.errors import OptionError

    def must_not_load(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the metric options were checked")

    monkeypatch.setattr(loading, "load_model", must_not_load)
    for bad in ({"recall_ks": (0,)}, {"map_ks": (2.5,)}, {"ties": "random"}):
        with pytest.raises(OptionError):
            evaluate("reference-dual", corpus=None, **bad)
