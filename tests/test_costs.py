"""fico bench costs: encode / storage / query-time cost per scale, budgets and DNF, fingerprint, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fico_registry.errors import OptionError
from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention
from fico_registry.studies.costs import (
    Budget,
    CostSettings,
    Scale,
    hardware_fingerprint,
    parse_memory_budget,
    parse_scales,
    run_costs,
)
from fico_registry.studies.costs.budget import BudgetExceeded, DeadlineModel, predicted_memory
from fico_registry.studies.costs.extrapolate import Fit, feature_value, fit_component, fit_line, rerank_pairs
from fico_registry.studies.costs.storage import GIB, StorageModel, side_layout

BASE_IMAGES = 5
SCALES = "5x25,10x50,1Mx5M"  # two measured, one far over the budget


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from fico_registry.data import synthetic

    return synthetic(n_images=BASE_IMAGES, split="test", root=tmp_path_factory.mktemp("synthetic"))


def _run(models, base, tmp_path_factory, **budget):
    settings = CostSettings(
        scales=parse_scales(SCALES), device="cpu", batch_size=8, budget=Budget(**budget), progress=False
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FICO_HOME", str(tmp_path_factory.mktemp("fico-home")))
        return run_costs(models, base, settings, config="tiny")


@pytest.fixture(scope="module")
def doc(base, tmp_path_factory):
    budget = parse_memory_budget("4GB")
    return _run(["reference-dual", "adv-64"], base, tmp_path_factory, time_s=30.0, memory_bytes=budget)


def _model(doc, name):
    return next(m for m in doc["models"] if m["name"] == name)


# -- scales, fits, storage arithmetic (no model) --------------------------------------------------
def test_scales_parse_units_sort_and_factor():
    assert Scale.parse("1kx5k") == Scale(1000, 5000)
    assert Scale.parse("1M/5M") == Scale(1_000_000, 5_000_000)
    assert Scale.parse("10Kx50K").short == "10K/50K"
    assert [s.label for s in parse_scales("10kx50k, 1000x5000,1kx5k")] == ["1000x5000", "10000x50000"]
    assert Scale(10_000, 50_000).factor_over(1000, 5000) == 10
    with pytest.raises(OptionError, match="whole duplication"):
        Scale(1500, 7500).factor_over(1000, 5000)
    with pytest.raises(OptionError, match="whole duplication"):
        Scale(2000, 9000).factor_over(1000, 5000)  # captions do not scale with the images
    with pytest.raises(OptionError):
        Scale.parse("1000")


def test_fit_line_recovers_a_line_and_never_goes_negative():
    a, b = fit_line([10, 20, 40], [1 + 0.5 * 10, 1 + 0.5 * 20, 1 + 0.5 * 40])
    assert a == pytest.approx(1.0) and b == pytest.approx(0.5)
    a, b = fit_line([10, 20], [0.5, 2.5])  # best line has a negative intercept: refit through 0
    assert a == 0.0 and b == pytest.approx((10 * 0.5 + 20 * 2.5) / (10**2 + 20**2))
    assert fit_line([4], [2.0]) == (0.0, 0.5)


def test_features_of_each_component():
    s = Scale(1000, 5000)
    assert feature_value("encode_images", s) == 1000
    assert feature_value("encode_texts", s) == 5000
    assert feature_value("attention", s) == feature_value("search", s) == 5_000_000
    # every image re-ranks its top-128 captions, every caption its top-128 images
    assert rerank_pairs(s, 128) == 1000 * 128 + 5000 * 128
    assert rerank_pairs(Scale(10, 50), 128) == 10 * 50 + 50 * 10  # k capped by the candidates


def test_storage_arithmetic_by_hand():
    n = 3
    images = {"embeds": torch.zeros(n, 4, 8, dtype=torch.float16), "tokens": torch.zeros(n, 10, 6)}
    texts = {"embeds": torch.zeros(n, 8), "input_ids": torch.zeros(n, 12, dtype=torch.int64)}
    kind, rerank = OutputKind.SIMILARITY, QueryTimeAttention.FUSION_RERANK
    model = StorageModel(side_layout(images, kind, rerank), side_layout(texts, kind, rerank))
    # image: embeds 4*8 fp16 = 64 B, tokens 10*6 fp32 = 240 B; text: embeds 8*4 = 32 B, ids 12*8 = 96 B
    assert model.per_item() == {
        "image": {"embedding": 64, "attention": 240},
        "text": {"embedding": 32, "attention": 96},
    }
    at = model.at(Scale(1_000_000, 5_000_000))
    assert at["embedding_bytes"] == {"images": 64_000_000, "texts": 160_000_000, "total": 224_000_000}
    assert at["attention_bytes"]["total"] == 240_000_000 + 480_000_000
    assert at["total_bytes"] == 224_000_000 + 720_000_000
    assert at["embedding_gib"] == pytest.approx(224_000_000 / 2**30, abs=1e-6)
    assert model.output_bytes(Scale(2, 10)) == 2 * (64 + 240) + 10 * (32 + 96)

    # binary codes are stored packed whatever dtype the model returns; extra outputs are unused
    codes = side_layout(
        {"embeds": torch.ones(n, 64, dtype=torch.int8), "logits": torch.zeros(n, 64)}, OutputKind.BINARY, None, bits=64
    )
    assert [(t.name, t.role, t.bytes_per_item, t.output_bytes_per_item) for t in codes] == [
        ("embeds", "embedding", 8, 64),
        ("logits", "unused", 256, 256),
    ]
    # cross-attention models keep everything for query time
    cross = side_layout(
        {"regions": torch.zeros(n, 36, 16), "lengths": torch.zeros(n, dtype=torch.int64)},
        kind,
        QueryTimeAttention.CROSS_ATTENTION,
    )
    assert sum(t.bytes_per_item for t in cross if t.role == "attention") == 36 * 16 * 4 + 8


def test_memory_prediction_counts_the_cross_attention_matrix():
    n = 2
    layout = StorageModel(
        side_layout(torch.zeros(n, 16), OutputKind.CONTINUOUS, None),
        side_layout(torch.zeros(n, 16), OutputKind.CONTINUOUS, None),
    )
    scale = Scale(1000, 5000)
    plain = predicted_memory(layout, scale, "exact-search")
    assert plain["encoder_outputs"] == 64 * 1000 + 64 * 5000 + 64 * 5000  # the larger side twice (concatenation)
    assert plain["score_matrix"] == 0
    assert predicted_memory(layout, scale, "cross-attention")["score_matrix"] == 4 * 1000 * 5000


def test_budget_parsing_and_refusal():
    assert parse_memory_budget("500MB") == 500 << 20
    assert parse_memory_budget(2 * GIB) == 2 * GIB  # a bare number is bytes, as memory_budget=int is
    assert parse_memory_budget("1.5GB") == int(1.5 * GIB)
    with pytest.raises(OptionError, match="8GB"):  # '8' would be 8 bytes: refused with the fix
        parse_memory_budget("8")
    with pytest.raises(OptionError):
        parse_memory_budget("lots")
    with pytest.raises(OptionError):
        Budget(time_s=0)
    budget = Budget(time_s=10, memory_bytes=GIB)
    assert budget.refuse(5, GIB // 2) == {}
    assert set(budget.refuse(11, 2 * GIB)) == {"time", "memory"}


def test_hardware_fingerprint_keys():
    hw = hardware_fingerprint()
    for key in (
        "cpu",
        "cores_logical",
        "cores_usable",
        "ram_bytes",
        "gpu",
        "gpus",
        "torch",
        "cuda",
        "python",
        "threads",
        "packages",
    ):
        assert key in hw
    assert hw["torch"] == torch.__version__
    assert hw["packages"]["torch"] and hw["packages"]["numpy"] == np.__version__
    assert hw["cores_usable"] >= 1 and hw["threads"]["torch"] >= 1
    json.dumps(hw)


# -- measured runs --------------------------------------------------------------------------------
def test_continuous_model_costs(doc, base):
    assert doc["hardware"]["torch"] == torch.__version__
    m = _model(doc, "reference-dual")
    assert m["status"] == "ok" and m["query_kind"] == "exact-search" and m["batch_size"] == 8
    assert m["precision"] == "fp32" and m["probe"]["output_dtype"] == {"image": "float32", "text": "float32"}
    dim = m["width"]
    assert m["storage"]["per_item"] == {
        "image": {"embedding": 4 * dim, "attention": 0},
        "text": {"embedding": 4 * dim, "attention": 0},
    }
    measured = [s for s in m["scales"] if s["status"] == "ok"]
    assert [s["scale"] for s in measured] == ["5x25", "10x50"]
    for s in measured:
        assert s["factor"] == s["n_images"] // BASE_IMAGES
        assert s["encode"]["images"]["items"] == s["n_images"] and s["encode"]["texts"]["items"] == s["n_texts"]
        assert s["encode"]["images"]["wall_s"] >= s["encode"]["images"]["seconds"] > 0
        assert s["memory"]["encoder_output_bytes"] == s["memory"]["encoder_output_bytes_expected"]
        assert s["query"]["kind"] == "exact-search" and s["query"]["cells"] == 2 * s["n_images"] * s["n_texts"]
        assert s["total_s"] == pytest.approx(sum(s["seconds"].values()), abs=1e-5)
    assert m["accuracy"]["status"] == "ok" and m["accuracy"]["corpus"]["n_images"] == BASE_IMAGES
    assert 0 <= m["accuracy"]["rsum"] <= 6


def test_binary_model_storage_is_packed_bits(doc):
    m = _model(doc, "adv-64")
    assert m["status"] == "ok" and m["output"] == "binary" and m["width"] == 64
    assert m["storage"]["per_item"]["image"] == {"embedding": 8, "attention": 0}  # 64 bits = 8 bytes
    at = m["storage"]["at"]["1000000x5000000"]
    assert at["embedding_bytes"]["total"] == 8 * 6_000_000
    assert at["embedding_gib"] == pytest.approx(48_000_000 / 2**30, abs=1e-6)
    ok = [s for s in m["scales"] if s["status"] == "ok"]
    assert ok and all(s["query"]["measure"] == "hamming" for s in ok)


def test_dnf_with_extrapolation_from_measured_scales(doc):
    m = _model(doc, "reference-dual")
    dnf = m["scales"][-1]
    assert dnf["scale"] == "1000000x5000000" and dnf["status"] == "dnf"
    assert dnf["over"][0] == "time" and not dnf["stopped"] and "time budget 30 s" in dnf["reason"]
    ex = dnf["extrapolation"]
    assert ex["encode_images"]["model"] == "t = a + b * n_images"
    assert ex["encode_texts"]["model"] == "t = a + b * n_texts"
    assert ex["search"]["model"] == "t = a + b * n_images*n_texts"
    assert ex["encode_images"]["fitted_on"] == ["5x25", "10x50"]
    scale = Scale(1_000_000, 5_000_000)
    by_hand = {c: Fit(c, e["a_s"], e["b_s_per_unit"]).predict(scale) for c, e in ex.items()}
    for component, seconds in by_hand.items():
        assert dnf["predicted"]["seconds"][component] == pytest.approx(seconds, rel=1e-6)
    assert dnf["predicted"]["total_s"] == pytest.approx(sum(by_hand.values()), rel=1e-6)
    assert dnf["predicted"]["total_s"] > 30
    # the fits are the ones a re-fit on the measured points gives
    points = [(Scale.parse(s["scale"]), s["seconds"]["encode_texts"]) for s in m["scales"] if s["status"] == "ok"]
    refit = fit_component("encode_texts", points)
    assert refit.b == pytest.approx(ex["encode_texts"]["b_s_per_unit"])
    assert dnf["storage"]["total_bytes"] == m["storage"]["at"]["1000000x5000000"]["total_bytes"]


def test_memory_budget_refuses_before_anything_runs(base, tmp_path_factory):
    doc = _run(["reference-dual"], base, tmp_path_factory, memory_bytes=1 << 20)
    m = doc["models"][0]
    assert m["accuracy"]["status"] == "dnf"
    assert all(s["status"] == "dnf" and s["over"] == ["memory"] for s in m["scales"])
    assert m["scales"][0]["extrapolation"]["encode_images"]["fitted_on"] == ["probe"]
    assert m["probe"]["seconds_per_unit"]["encode_images"] > 0


def test_run_over_its_time_budget_is_stopped(base, tmp_path_factory, monkeypatch):
    from fico_registry import load_model

    model = load_model("reference-dual", config="tiny", device="cpu")
    late = DeadlineModel(model, budget_s=1e-9)
    assert late.spec is model.spec and late.width == model.width
    with pytest.raises(BudgetExceeded):
        late.encode_texts(["a red circle"])
    monkeypatch.setattr(Budget, "refuse", lambda self, s, b: {})  # the prediction lets it start
    doc = _run(["reference-dual"], base, tmp_path_factory, time_s=1e-9)
    first = doc["models"][0]["scales"][0]
    assert first["status"] == "dnf" and first["stopped"] and first["over"] == ["time"]
    assert "over the time budget" in first["reason"]


def test_similarity_model_costs(base, tmp_path_factory):
    from fico_registry import load_model

    try:
        model = load_model("scan", config="tiny", device="cpu")
    except Exception as exc:  # the SCAN plugin is optional (and may be mid-development)
        pytest.skip(f"scan (tiny) does not load here: {type(exc).__name__}: {exc}")
    config = model.config
    doc = _run(["scan"], base, tmp_path_factory, time_s=60.0, memory_bytes=parse_memory_budget("4GB"))
    m = doc["models"][0]
    assert m["status"] == "ok", m.get("error")
    assert m["query_kind"] == "cross-attention"
    # region features (36 x embed) and padded words (max_words x embed) + one int64 length
    embed, words = config["embed_size"], config["max_words"]
    assert m["storage"]["per_item"]["image"] == {"embedding": 0, "attention": 36 * embed * 4}
    assert m["storage"]["per_item"]["text"] == {"embedding": 0, "attention": words * embed * 4 + 8}
    ok = [s for s in m["scales"] if s["status"] == "ok"]
    assert ok
    for s in ok:
        q = s["query"]
        assert q["pairs"] == s["n_images"] * s["n_texts"] and q["scorer_calls"] >= 1
        assert q["matrix_bytes"] == 4 * q["pairs"]
        assert set(s["seconds"]) == {"encode_images", "encode_texts", "attention", "search"}
    dnf = m["scales"][-1]
    assert dnf["status"] == "dnf" and dnf["extrapolation"]["attention"]["model"] == "t = a + b * n_images*n_texts"
    assert dnf["predicted"]["memory_bytes"]["score_matrix"] == 4 * 1_000_000 * 5_000_000
    assert set(dnf["over"]) == {"time", "memory"}


def test_model_that_fails_to_load_is_reported(base, tmp_path_factory):
    doc = _run(["no-such-model"], base, tmp_path_factory)
    assert doc["models"][0]["status"] == "error" and "no-such-model" in doc["models"][0]["error"]


# -- outputs ----------------------------------------------------------------------------------------
def test_tables_and_plots_from_the_document(doc, tmp_path):
    from rich.console import Console

    from fico_registry.studies.costs.plots import plot_cost_figures
    from fico_registry.studies.costs.table import cost_tables

    console = Console(record=True, width=200)
    for table in cost_tables(doc):
        console.print(table)
    text = console.export_text()
    assert "reference-dual" in text and "DNF: predicted over time" in text
    paths = plot_cost_figures(doc, tmp_path, "png")
    assert {p.name for p in paths} == {"encode_time.png", "query_time.png", "accuracy_vs_cost.png", "storage.png"}
    assert all(p.stat().st_size > 1000 for p in paths)


def test_cli_costs_writes_json_and_plots(tmp_path):
    from click.testing import CliRunner

    from fico_registry.cli.main import cli

    out = tmp_path / "costs.json"
    result = CliRunner().invoke(
        cli,
        ["bench", "costs", "reference-dual", "--config", "tiny", "--scales", "4x20,8x40,1Mx5M", "--device", "cpu",
         "--batch-size", "8", "--time-budget", "20", "--memory-budget", "2GB", "--json", str(out),
         "--plots", str(tmp_path / "plots")],
        obj={},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["fico_bench"] == "costs" and doc["dataset"]["base_images"] == 4
    assert doc["settings"]["budget"]["time_s"] == 20 and doc["settings"]["budget"]["memory_bytes"] == 2 * GIB
    scales = doc["models"][0]["scales"]
    assert [s["status"] for s in scales] == ["ok", "ok", "dnf"]
    assert math.isfinite(scales[-1]["predicted"]["total_s"])
    assert (tmp_path / "plots" / "encode_time.png").exists()
    assert "DNF" in result.output


def test_cli_rejects_scales_that_are_not_duplications(tmp_path):
    from click.testing import CliRunner

    from fico_registry.cli.main import cli

    result = CliRunner().invoke(
        cli, ["bench", "costs", "reference-dual", "--config", "tiny", "--scales", "4x20,6x30"], obj={}
    )
    assert result.exit_code == 2 and "whole duplication" in result.output
