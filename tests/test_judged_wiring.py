"""Judged relevance wired through evaluate_embeddings / evaluate_similarity and the Report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fico_registry import evaluate_embeddings, evaluate_similarity
from fico_registry.data.judgments import Judgments, JudgmentSet
from fico_registry.errors import MemoryBudgetError, OptionError, ShapeError
from fico_registry.evaluator.judged import judged_metrics
from fico_registry.evaluator.judged_pass import ShardedJudgmentsError, refuse_sharded


def _problem(seed: int = 0, n_img: int = 12, per: int = 3, d: int = 8):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n_img, d)).astype(np.float32)
    c2i = np.repeat(np.arange(n_img), per)
    texts = (images[c2i] + rng.normal(size=(len(c2i), d))).astype(np.float32)
    n_txt = len(c2i)
    q, c = rng.integers(0, n_img, 40), rng.integers(0, n_txt, 40)
    pairs = sorted(set(zip(q.tolist(), c.tolist(), strict=True)))
    i2t = Judgments.from_pairs(
        [p[0] for p in pairs], [p[1] for p in pairs], n_img, n_txt, rng.integers(1, 4, len(pairs))
    )
    return images, texts, c2i, JudgmentSet("rand", i2t, i2t.transpose(), source="test")


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
def test_embeddings_report_equals_judged_metrics_on_the_same_scores(ties):
    images, texts, c2i, js = _problem()
    report = evaluate_embeddings(images, texts, c2i, device="cpu", ties=ties, judgments={"rand": js}, ndcg_ks=(3, 10))
    scores = (
        torch.nn.functional.normalize(torch.from_numpy(images), dim=1)
        @ torch.nn.functional.normalize(torch.from_numpy(texts), dim=1).T
    )
    for direction, matrix in (("i2t", scores), ("t2i", scores.T.contiguous())):
        want = judged_metrics(lambda lo, hi, m=matrix: m[lo:hi], js.direction(direction), ndcg_ks=(3, 10), ties=ties)
        got = report.to_dict()["judged"]["rand"][direction]
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-6), key
    data = report.to_dict()
    assert data["judged"]["rand"]["provenance"]["source"] == "test"
    assert data["settings"]["ndcg_ks"] == [3, 10] and data["settings"]["gain"] == "linear"
    assert data["settings"]["judged_seconds"] >= 0
    json.loads(report.to_json())  # JSON-clean


def test_instance_recall_equals_judged_recall_of_the_instance_map():
    images, texts, c2i, _ = _problem(seed=3)
    instance = JudgmentSet(
        "coco", Judgments.from_map(c2i, len(images), "i2t"), Judgments.from_map(c2i, len(images), "t2i")
    )
    report = evaluate_embeddings(images, texts, c2i, device="cpu", judgments=instance)
    for direction in ("i2t", "t2i"):
        for k in (1, 5, 10):
            assert report.judged["coco"][direction][f"R@{k}"] == pytest.approx(report.instance[direction][f"R@{k}"])


def test_similarity_uses_the_separate_t2i_matrix_and_blocks_follow_the_budget():
    images, texts, c2i, js = _problem(seed=1)
    i2t = images @ texts.T
    t2i = np.ascontiguousarray(-i2t.T)  # a different t2i ranking: judged t2i must follow it
    small = evaluate_similarity(i2t, c2i, t2i=t2i, device="cpu", judgments={"rand": js}, memory_budget=4096)
    big = evaluate_similarity(i2t, c2i, t2i=t2i, device="cpu", judgments={"rand": js})
    want = judged_metrics(lambda lo, hi: torch.from_numpy(t2i[lo:hi]), js.t2i)
    assert small.judged["rand"]["t2i"]["mAP@R"] == pytest.approx(want["mAP@R"])
    for direction in ("i2t", "t2i"):  # the same numbers whatever the block size (up to summation order)
        assert small.judged["rand"][direction] == pytest.approx(big.judged["rand"][direction])


def test_one_direction_only_and_pairs_are_accepted():
    images, texts, c2i, js = _problem(seed=2)
    report = evaluate_embeddings(images, texts, c2i, device="cpu", judgments={"half": (js.i2t, None)})
    assert report.judged["half"]["t2i"] is None and report.judged["half"]["i2t"]["judged_queries"] > 0


def test_bad_judged_inputs_are_typed_errors():
    images, texts, c2i, js = _problem()
    with pytest.raises(OptionError, match="ndcg_ks"):
        evaluate_embeddings(images, texts, c2i, device="cpu", judgments=js, ndcg_ks=(0,))
    with pytest.raises(OptionError, match="gain"):
        evaluate_embeddings(images, texts, c2i, device="cpu", judgments=js, gain="log")
    wrong = JudgmentSet("wrong", Judgments.from_pairs([0], [0], 3, 4))
    with pytest.raises(ShapeError, match="judgments 'wrong' \\(i2t\\)"):
        evaluate_embeddings(images, texts, c2i, device="cpu", judgments=wrong)
    with pytest.raises(MemoryBudgetError, match="judged metrics need whole score rows"):
        evaluate_similarity(images @ texts.T, c2i, device="cpu", judgments=js, memory_budget=64)
    with pytest.raises(ShardedJudgmentsError, match="torchrun"):
        refuse_sharded({"rand": js})
    refuse_sharded({})  # nothing asked: nothing refused


def test_report_round_trip_and_table_show_judged():
    from rich.console import Console

    from fico_registry.evaluator.report import Report

    images, texts, c2i, js = _problem()
    report = evaluate_embeddings(images, texts, c2i, device="cpu", judgments=js)
    again = Report.from_dict(json.loads(report.to_json()))
    assert again.judged == report.to_dict()["judged"]
    console = Console(record=True, width=200)
    report.print(console)
    text = console.export_text()
    assert "judged relevance" in text and "mAP@R" in text and "NDCG@10" in text


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
def test_depth_limited_counts_give_the_exact_metrics(ties):
    from fico_registry.evaluator.judged import block_sums, judged_counts

    rng = np.random.default_rng(7)
    scores = torch.from_numpy(rng.integers(0, 12, size=(30, 200)).astype(np.float32))  # many ties
    row = np.repeat(np.arange(30), rng.integers(1, 9, 30))
    col = np.concatenate([rng.choice(200, size=int((row == r).sum()), replace=False) for r in range(30)])
    grade = rng.integers(1, 4, len(row)).astype(np.float64)
    exact_above, exact_tied = judged_counts(scores, row, col)
    assert np.array_equal(exact_above, (scores[row] > scores[row, col][:, None]).sum(1).numpy())
    assert np.array_equal(exact_tied, (scores[row] == scores[row, col][:, None]).sum(1).numpy())
    want, _ = block_sums(
        row, exact_above, exact_tied, grade, 30, recall_ks=(1, 3), ndcg_ks=(2, 5), ties=ties, gain="linear"
    )
    depth = max(int(np.bincount(row).max()), 5)
    above, tied = judged_counts(scores, row, col, depth)
    inside = exact_above < depth
    assert np.array_equal(above[inside], exact_above[inside]) and (above[~inside] >= depth).all()
    got, _ = block_sums(row, above, tied, grade, 30, recall_ks=(1, 3), ndcg_ks=(2, 5), ties=ties, gain="linear")
    assert got == pytest.approx(want)


def test_the_fallback_pass_scores_the_source_itself():
    from fico_registry.evaluator.judged_pass import collectors, judged_section
    from fico_registry.evaluator.sources import EmbeddingScores

    images, texts, c2i, js = _problem(seed=4)
    img = torch.nn.functional.normalize(torch.from_numpy(images), dim=1)
    txt = torch.nn.functional.normalize(torch.from_numpy(texts), dim=1)
    sources = {"i2t": EmbeddingScores(img, txt, "cosine", "image"), "t2i": EmbeddingScores(img, txt, "cosine", "text")}
    unfed = collectors(sources, {"rand": js}, recall_ks=(1, 5, 10), ndcg_ks=(10,), ties="expected", gain="linear")
    alone = judged_section(sources, {"rand": js}, unfed, budget=2048)  # no engine: blocks read here
    report = evaluate_embeddings(images, texts, c2i, device="cpu", judgments=js)
    for direction in ("i2t", "t2i"):
        assert alone["rand"][direction] == pytest.approx(report.judged["rand"][direction])


def test_several_sets_in_one_run_equal_each_set_alone():
    images, texts, c2i, js = _problem(seed=5)
    other = _problem(seed=6)[3]
    both = evaluate_embeddings(images, texts, c2i, device="cpu", judgments={"a": js, "b": other})
    for name, single in (("a", js), ("b", other)):
        alone = evaluate_embeddings(images, texts, c2i, device="cpu", judgments={name: single})
        for direction in ("i2t", "t2i"):
            assert both.judged[name][direction] == pytest.approx(alone.judged[name][direction])


def test_a_sharded_evaluation_refuses_judgments_before_ranking():
    from fico_registry.evaluator.evaluate_sources import evaluate_sources
    from fico_registry.evaluator.options import MetricOptions
    from fico_registry.evaluator.sources import EmbeddingScores

    images, texts, c2i, js = _problem()
    img, txt = torch.from_numpy(images), torch.from_numpy(texts)
    sources = (EmbeddingScores(img, txt, "cosine", "image"), EmbeddingScores(img, txt, "cosine", "text"))

    class NeverUsed:  # stands for a torchrun sharding: it must not be reached
        def __getattr__(self, name):
            raise AssertionError(f"the sharding was used ({name})")

    with pytest.raises(ShardedJudgmentsError, match="one process"):
        evaluate_sources(
            *sources,
            c2i,
            None,
            MetricOptions(recall_ks=(1,), map_ks=(), progress=False, ndcg_ks=(10,)),
            device=torch.device("cpu"),
            settings={},
            started=0.0,
            sharded=NeverUsed(),
            judgments=js,
        )


def test_public_names():
    import fico_registry

    assert fico_registry.Judgments is Judgments and fico_registry.JudgmentSet is JudgmentSet
    assert callable(fico_registry.data.eccv_caption_judgments) and callable(fico_registry.data.coco_caption_ids)


@pytest.mark.parametrize("ties", ["expected", "pessimistic"])
def test_hamming_codes_integer_scores_with_many_ties(ties):
    images, texts, c2i, js = _problem(seed=8)
    codes_i, codes_t = (
        np.where(images[:, :6] >= 0, 1, -1).astype(np.int8),
        np.where(texts[:, :6] >= 0, 1, -1).astype(np.int8),
    )
    report = evaluate_embeddings(codes_i, codes_t, c2i, measure="hamming", device="cpu", ties=ties, judgments=js)
    scores = -(codes_i[:, None, :] != codes_t[None, :, :]).sum(2)  # higher = closer
    for direction, matrix in (("i2t", scores), ("t2i", scores.T)):
        m = torch.from_numpy(np.ascontiguousarray(matrix))
        want = judged_metrics(lambda lo, hi, m=m: m[lo:hi], js.direction(direction), ties=ties)
        assert report.judged["rand"][direction] == pytest.approx(want)
