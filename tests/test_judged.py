"""Judged relevance: construction, and every metric against brute force, pytrec_eval and eccv-caption."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from fico_registry.data.judgments import Judgments, JudgmentSet, as_judgment_sets
from fico_registry.errors import DataFormatError, MappingError, NonFiniteError, ShapeError
from fico_registry.evaluator.judged import judged_metrics

TIES = ("expected", "optimistic", "pessimistic")


# -- construction ---------------------------------------------------------------------------------


def test_from_pairs_dict_sparse_and_trec_agree(tmp_path):
    import scipy.sparse as sp

    a = Judgments.from_pairs([0, 0, 2], [3, 1, 0], 3, 4, [2.0, 1.0, 3.0])
    b = Judgments.from_dict({0: {1: 1.0, 3: 2.0}, 2: {0: 3.0}}, 3, 4)
    c = Judgments.from_sparse(sp.csr_matrix(([2.0, 1.0, 3.0], ([0, 0, 2], [3, 1, 0])), shape=(3, 4)))
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q0 0 d3 2\nq0 0 d1 1\nq1 0 d2 0\nq2 0 d0 3\n")
    d = Judgments.from_trec(qrels, ["q0", "q1", "q2"], ["d0", "d1", "d2", "d3"])
    for j in (b, c, d):
        assert np.array_equal(j.indptr, a.indptr) and np.array_equal(j.indices, a.indices)
        assert np.array_equal(j.grades, a.grades)
    assert list(a.judged_queries) == [0, 2] and a.graded  # grade 0 (q1) is not relevant
    t = a.transpose()
    assert (t.n_queries, t.n_candidates) == (4, 3) and list(t.counts) == [1, 1, 0, 1]


def test_bad_judgments_are_typed_errors(tmp_path):
    with pytest.raises(MappingError, match=r"candidate index 9 is outside 0\.\.3"):
        Judgments.from_pairs([0], [9], 2, 4)
    with pytest.raises(NonFiniteError, match="NaN or infinite"):
        Judgments.from_pairs([0], [1], 2, 4, [float("nan")])
    with pytest.raises(DataFormatError, match="judged twice"):
        Judgments.from_pairs([0, 0], [1, 1], 2, 4)
    with pytest.raises(ShapeError, match="2 grades for 1 pairs"):
        Judgments.from_pairs([0], [1], 2, 4, [1, 2])
    bad = tmp_path / "bad.txt"
    bad.write_text("q0 0 d1\n")
    with pytest.raises(DataFormatError, match="4 fields"):
        Judgments.from_trec(bad, ["q0"], ["d1"])
    bad.write_text("q0 0 dX 1\n")
    with pytest.raises(MappingError, match="candidate id 'dX' is not in the corpus"):
        Judgments.from_trec(bad, ["q0"], ["d1"])
    assert len(Judgments.from_trec(bad, ["q0"], ["d1"], strict=False).indices) == 0
    with pytest.raises(DataFormatError, match="neither i2t nor t2i"):
        JudgmentSet("empty")
    with pytest.raises(DataFormatError, match="JudgmentSet or an"):
        as_judgment_sets({"x": 3})


# -- brute force over every tie order ---------------------------------------------------------------


def _metrics_of_order(order: list[int], gains: dict[int, float], ks=(1, 2, 3), ndcg_k=3) -> dict[str, float]:
    rel = [gains.get(c, 0.0) for c in order]
    big_r = len(gains)
    out = {f"R@{k}": float(any(g > 0 for g in rel[:k])) for k in ks}
    out["R-P"] = sum(g > 0 for g in rel[:big_r]) / big_r
    precisions = [sum(g > 0 for g in rel[: p + 1]) / (p + 1) for p in range(big_r) if rel[p] > 0]
    out["mAP@R"] = sum(precisions) / big_r
    dcg = sum(g / math.log2(p + 2) for p, g in enumerate(rel[:ndcg_k]))
    ideal = sorted(gains.values(), reverse=True)
    idcg = sum(g / math.log2(p + 2) for p, g in enumerate(ideal[:ndcg_k]))
    out[f"NDCG@{ndcg_k}"] = dcg / idcg
    first = next((p for p, g in enumerate(rel) if g > 0), None)
    out[f"MRR@{ndcg_k}"] = 1.0 / (first + 1) if first is not None and first < ndcg_k else 0.0
    return out


def _brute(scores: np.ndarray, gains: dict[int, float], ties: str) -> dict[str, float]:
    """Average over every order consistent with the scores (expected), or the extreme order."""
    n = len(scores)
    if ties != "expected":
        sign = -1 if ties == "optimistic" else 1
        order = sorted(range(n), key=lambda c: (-scores[c], sign * gains.get(c, 0.0)))
        return _metrics_of_order(order, gains)
    total: dict[str, float] = {}
    count = 0
    for perm in itertools.permutations(range(n)):
        if all(scores[perm[i]] >= scores[perm[i + 1]] for i in range(n - 1)):
            for name, value in _metrics_of_order(list(perm), gains).items():
                total[name] = total.get(name, 0.0) + value
            count += 1
    return {name: value / count for name, value in total.items()}


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("seed", range(12))
def test_every_metric_equals_brute_force_over_tie_orders(seed, ties):
    rng = np.random.default_rng(seed)
    n_queries, n_candidates = 3, 7
    scores = rng.integers(0, 3, size=(n_queries, n_candidates)).astype(np.float32)  # heavy ties
    q, c, g = [], [], []
    for query in range(n_queries):
        chosen = rng.choice(n_candidates, size=rng.integers(1, 4), replace=False)
        for cand in chosen:
            q.append(query), c.append(int(cand)), g.append(float(rng.integers(1, 4)))
    judged = Judgments.from_pairs(q, c, n_queries, n_candidates, g)
    ours = judged_metrics(
        lambda lo, hi: torch.from_numpy(scores[lo:hi]), judged, recall_ks=(1, 2, 3), ndcg_ks=(3,), ties=ties
    )
    per_query = []
    for query in range(n_queries):
        lo, hi = judged.indptr[query], judged.indptr[query + 1]
        cols, grades = judged.indices[lo:hi], judged.grades[lo:hi]
        per_query.append(_brute(scores[query], dict(zip(cols.tolist(), grades.tolist(), strict=True)), ties))
    assert ours["judged_queries"] == n_queries
    for name in per_query[0]:
        want = float(np.mean([m[name] for m in per_query]))
        assert ours[name] == pytest.approx(want, abs=1e-12), name


def test_queries_without_judgments_are_left_out():
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    judged = Judgments.from_pairs([0, 2], [0, 2], 3, 3)
    out = judged_metrics(lambda lo, hi: torch.from_numpy(scores[lo:hi]), judged, recall_ks=(1,), block_rows=2)
    assert out["judged_queries"] == 2
    assert out["R@1"] == pytest.approx(0.5) and out["MRR@10"] == pytest.approx((1 + 1 / 3) / 2)


# -- pytrec_eval (trec_eval) on random graded qrels, no ties -----------------------------------------


def test_ndcg_mrr_rprecision_equal_trec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(7)
    n_queries, n_candidates = 40, 60
    scores = rng.standard_normal((n_queries, n_candidates))
    qrels: dict[str, dict[str, int]] = {}
    q, c, g = [], [], []
    for query in range(n_queries):
        chosen = rng.choice(n_candidates, size=rng.integers(1, 12), replace=False)
        grades = rng.integers(1, 5, size=len(chosen))
        qrels[f"q{query}"] = {f"d{cand}": int(grade) for cand, grade in zip(chosen, grades, strict=True)}
        q += [query] * len(chosen)
        c += chosen.tolist()
        g += grades.tolist()
    run = {f"q{i}": {f"d{j}": float(scores[i, j]) for j in range(n_candidates)} for i in range(n_queries)}
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recip_rank", "Rprec"}).evaluate(run)
    judged = Judgments.from_pairs(q, c, n_queries, n_candidates, g)
    ours = judged_metrics(lambda lo, hi: torch.from_numpy(scores[lo:hi]), judged, ndcg_ks=(10, n_candidates))
    assert ours["NDCG@10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in trec.values()]), abs=1e-12)
    assert ours[f"MRR@{n_candidates}"] == pytest.approx(np.mean([v["recip_rank"] for v in trec.values()]), abs=1e-12)
    assert ours["R-P"] == pytest.approx(np.mean([v["Rprec"] for v in trec.values()]), abs=1e-12)


# -- eccv-caption's own Metrics on the COCO 5K test id space -----------------------------------------


@pytest.mark.slow
def test_eccv_cxc_coco_equal_the_eccv_caption_package():
    pytest.importorskip("eccv_caption")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from eccv_caption import Metrics

    from fico_registry.data.eccv_caption import eccv_caption_judgments, eccv_test_ids

    oracle = Metrics()
    image_ids = np.array(sorted(oracle.coco_gts["i2t"]))
    caption_ids = eccv_test_ids()
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.standard_normal((len(image_ids), 16)).astype(np.float32))
    txt = torch.from_numpy(rng.standard_normal((len(caption_ids), 16)).astype(np.float32))

    def i2t(lo, hi):
        return img[lo:hi] @ txt.T

    def t2i(lo, hi):
        return txt[lo:hi] @ img.T

    depth = 50  # deeper than any judged query's R (48)
    top_i2t = torch.cat(
        [i2t(lo, min(lo + 1000, len(img))).topk(depth, dim=1).indices for lo in range(0, len(img), 1000)]
    )
    top_t2i = torch.cat(
        [t2i(lo, min(lo + 5000, len(txt))).topk(depth, dim=1).indices for lo in range(0, len(txt), 5000)]
    )
    i2t_items = {int(image_ids[i]): caption_ids[top_i2t[i].numpy()].tolist() for i in range(len(img))}
    t2i_items = {int(caption_ids[i]): image_ids[top_t2i[i].numpy()].tolist() for i in range(len(txt))}
    want = oracle.compute_all_metrics(
        i2t_items,
        t2i_items,
        target_metrics=("coco_5k_recalls", "cxc_recalls", "eccv_r1", "eccv_rprecision", "eccv_map_at_r"),
        Ks=(1, 5, 10),
        verbose=False,
    )
    ours = {}
    for which in ("eccv", "cxc", "coco"):
        judged = eccv_caption_judgments(image_ids, caption_ids, which)
        ours[which] = {
            d: judged_metrics(f, judged.direction(d), recall_ks=(1, 5, 10)) for d, f in (("i2t", i2t), ("t2i", t2i))
        }
    for d in ("i2t", "t2i"):
        assert ours["eccv"][d]["R@1"] == pytest.approx(want["eccv_r1"][d], abs=1e-12)
        assert ours["eccv"][d]["R-P"] == pytest.approx(want["eccv_rprecision"][d], abs=1e-12)
        assert ours["eccv"][d]["mAP@R"] == pytest.approx(want["eccv_map_at_r"][d], abs=1e-12)
        for k in (1, 5, 10):
            assert ours["cxc"][d][f"R@{k}"] == pytest.approx(want[f"cxc_r{k}"][d], abs=1e-12)
            assert ours["coco"][d][f"R@{k}"] == pytest.approx(want[f"coco_5k_r{k}"][d], abs=1e-12)
