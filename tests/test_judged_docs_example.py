"""The worked example of docs/metrics.md, "Judged relevance", computed by hand and checked here."""

from __future__ import annotations

import math

import pytest
import torch

from fico_registry.data.judgments import Judgments
from fico_registry.evaluator.judged import judged_metrics

# one query, six candidates c1..c6 in score order; c2 grade 2, c3 grade 1, c5 grade 1 (R = 3)
JUDGED = Judgments.from_pairs([0, 0, 0], [1, 2, 4], 1, 6, [2, 1, 1])


def _run(scores, ties="expected", gain="linear"):
    return judged_metrics(
        lambda lo, hi: torch.tensor([scores]), JUDGED, recall_ks=(1, 5), ndcg_ks=(10,), ties=ties, gain=gain
    )


def test_without_ties():
    out = _run([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    log2 = math.log2
    assert out["R@1"] == 0 and out["R@5"] == 1
    assert out["R-P"] == pytest.approx(2 / 3)
    assert out["mAP@R"] == pytest.approx((1 / 2 + 2 / 3) / 3)  # 7/18: c5 at position 5 > R is not counted
    assert out["MRR@10"] == pytest.approx(1 / 2)
    dcg, ideal = 2 / log2(3) + 1 / log2(4) + 1 / log2(6), 2 / log2(2) + 1 / log2(3) + 1 / log2(4)
    assert out["NDCG@10"] == pytest.approx(dcg / ideal) and round(dcg / ideal, 4) == 0.6863
    exp = _run([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], gain="exponential")
    dcg, ideal = 3 / log2(3) + 1 / log2(4) + 1 / log2(6), 3 / log2(2) + 1 / log2(3) + 1 / log2(4)
    assert exp["NDCG@10"] == pytest.approx(dcg / ideal) and round(dcg / ideal, 4) == 0.6729
    assert round(out["mAP@R"], 4) == 0.3889


def test_with_c3_and_c4_tied():
    scores = [0.9, 0.8, 0.7, 0.7, 0.5, 0.4]
    log2 = math.log2
    want = {
        "optimistic": {"R-P": 2 / 3, "mAP@R": (1 / 2 + 2 / 3) / 3},
        "pessimistic": {"R-P": 1 / 3, "mAP@R": (1 / 2) / 3},
        "expected": {"R-P": 1.5 / 3, "mAP@R": (1 / 2 + 0.5 * 2 / 3) / 3},  # c3 at position 3 with probability 1/2
    }
    for ties, values in want.items():
        out = _run(scores, ties)
        for key, value in values.items():
            assert out[key] == pytest.approx(value), (ties, key)
    expected = _run(scores)
    dcg = 2 / log2(3) + (1 / log2(4) + 1 / log2(5)) / 2 + 1 / log2(6)
    ideal = 2 + 1 / log2(3) + 1 / log2(4)
    assert expected["NDCG@10"] == pytest.approx(dcg / ideal) and round(dcg / ideal, 4) == 0.6752
    assert round(expected["mAP@R"], 4) == 0.2778
