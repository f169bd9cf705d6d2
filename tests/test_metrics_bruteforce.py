"""Tie-aware metrics against brute force: averages over every order consistent with the ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_metrics import (
    AP,
    bracket_order,
    first_positive_rank,
    median_rank_over_orders,
    metric_by_policy,
    pr11_expected_counts,
    pr11_expected_over_orders,
    pr11_order,
)

from fico_registry import evaluate_similarity
from fico_registry.evaluator import engine, metrics, relevance
from fico_registry.evaluator.expected_median import expected_median_rank

TIES = ("expected", "optimistic", "pessimistic")


def _groups(rows_scores, rows_rel, *, top_k=None, as_float=False):
    dtype = torch.float32 if as_float else torch.int64
    scores = torch.tensor(rows_scores, dtype=dtype)
    rel = torch.tensor(rows_rel, dtype=torch.bool)
    if top_k is not None:
        return engine._groups_top_k(scores, relevance.MatrixRelevance(rel), 0, len(rows_scores), top_k)
    keys = engine._sorted_keys_with_relevance(scores, rel)
    return engine.groups_from_sorted(keys, scores.shape[1])


row_strategy = st.integers(min_value=1, max_value=7).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(min_value=0, max_value=3), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(row_strategy.filter(lambda r: len(r[0]) == 7), min_size=1, max_size=3)
    | st.lists(row_strategy, min_size=1, max_size=1)
)
def test_average_precision_matches_brute_force(rows):
    width = len(rows[0][0])
    rows = [r for r in rows if len(r[0]) == width]
    scores = [r[0] for r in rows]
    rels = [r[1] for r in rows]
    for as_float in (False, True):
        groups = _groups(scores, rels, as_float=as_float)
        for variant, fn in AP.items():
            for k in sorted({1, 2, 3, width, None} - {0}, key=lambda x: (x is None, x)):
                kk = width if k is None else min(k, width)
                for ties in TIES:
                    got = metrics.average_precision(groups, k, variant, ties)
                    for i, (s, rel) in enumerate(zip(scores, rels, strict=False)):
                        want = metric_by_policy(
                            s, rel, lambda order, rel=rel, fn=fn, kk=kk: fn([rel[j] for j in order], kk), ties
                        )
                        assert got[i] == pytest.approx(want, abs=1e-12), (variant, k, ties, s, rel)


@settings(max_examples=150, deadline=None)
@given(row=row_strategy.filter(lambda r: len(r[0]) >= 2))
def test_top_k_prefix_path_equals_full_path(row):
    scores, rel = row
    width = len(scores)
    for k in range(1, width):
        prefix = _groups([scores], [rel], top_k=k)
        full = _groups([scores], [rel])
        for variant in ("fico", "apk"):
            for ties in TIES:
                a = metrics.average_precision(prefix, k, variant, ties)
                b = metrics.average_precision(full, k, variant, ties)
                assert a == pytest.approx(b, abs=1e-12), (variant, ties, k, scores, rel)


@settings(max_examples=150, deadline=None)
@given(row=row_strategy)
def test_pr11_matches_brute_force(row):
    scores, rel = row
    groups = _groups([scores], [rel])
    for ties in TIES:
        got = metrics.pr11(groups, ties)[0]
        if ties == "expected":
            want = pr11_expected_counts(scores, rel)
        else:
            want = pr11_order(bracket_order(scores, rel, ties == "optimistic"), rel)
        if not any(rel):
            assert np.isnan(got).all()
        else:
            assert got == pytest.approx(want, abs=1e-12), (ties, scores, rel)


@settings(max_examples=200, deadline=None)
@given(
    data=st.integers(min_value=2, max_value=7).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(min_value=0, max_value=2), min_size=n, max_size=n),
            st.sets(st.integers(min_value=0, max_value=n - 1), min_size=1, max_size=n),
        )
    )
)
def test_instance_rank_and_recall_match_brute_force(data):
    scores, positives = data
    best = max(scores[i] for i in positives)
    g = sum(s > best for s in scores)
    p = sum(scores[i] == best for i in positives)
    t = sum(s == best for s in scores) - p
    rel = [i in positives for i in range(len(scores))]
    for ties in TIES:
        want_rank = metric_by_policy(scores, rel, lambda order: first_positive_rank(order, positives), ties)
        assert metrics.ranks([g], [t], [p], ties)[0] == pytest.approx(want_rank, abs=1e-12)
        for k in range(1, len(scores) + 1):
            want = metric_by_policy(
                scores, rel, lambda order, k=k: float(first_positive_rank(order, positives) <= k), ties
            )
            assert metrics.recall_at([g], [t], [p], k, ties)[0] == pytest.approx(want, abs=1e-12)


def test_without_ties_all_policies_agree():
    rng = np.random.default_rng(0)
    scores = rng.permutation(50).reshape(1, -1)
    rel = rng.random((1, 50)) < 0.3
    groups = _groups(scores.tolist(), rel.tolist())
    for variant in ("fico", "apk", "dcmh"):
        for k in (5, 20, None):
            values = {ties: metrics.average_precision(groups, k, variant, ties)[0] for ties in TIES}
            assert values["expected"] == pytest.approx(values["optimistic"]) == pytest.approx(values["pessimistic"])


def test_hand_computed_example():
    # ranking (best first): R N R N N R ; fico AP@N = (1/1 + 2/3 + 3/6) / 3
    groups = _groups([[6, 5, 4, 3, 2, 1]], [[1, 0, 1, 0, 0, 1]])
    assert metrics.average_precision(groups, None, "fico", "expected")[0] == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    # AP@3 (fico): relevant at 1 and 3 -> (1 + 2/3) / 2 ; apk: same sum / min(3, 3) ; dcmh: first 3 relevant
    assert metrics.average_precision(groups, 3, "fico", "expected")[0] == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.average_precision(groups, 3, "apk", "expected")[0] == pytest.approx((1 + 2 / 3) / 3)
    assert metrics.average_precision(groups, 3, "dcmh", "expected")[0] == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    # a full tie of 2 relevant among 4: expected AP = mean over the 6 placements
    tie = _groups([[1, 1, 1, 1]], [[1, 1, 0, 0]])
    placements = [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]
    want = np.mean([(1 / a + 2 / b) / 2 for a, b in placements])
    assert metrics.average_precision(tie, None, "fico", "expected")[0] == pytest.approx(want)
    assert metrics.average_precision(tie, None, "fico", "optimistic")[0] == pytest.approx(1.0)
    assert metrics.average_precision(tie, None, "fico", "pessimistic")[0] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_expected_lies_between_bounds_on_large_hamming_ties():
    rng = np.random.default_rng(3)
    scores = -rng.integers(0, 9, size=(20, 400))  # heavy ties, like short hash codes
    rel = rng.random((20, 400)) < 0.2
    groups = _groups(scores.tolist(), rel.tolist())
    for variant in ("fico", "apk", "dcmh"):
        for k in (10, 100, None):
            lo = metrics.average_precision(groups, k, variant, "pessimistic")
            mid = metrics.average_precision(groups, k, variant, "expected")
            hi = metrics.average_precision(groups, k, variant, "optimistic")
            assert (lo <= mid + 1e-12).all() and (mid <= hi + 1e-12).all()


def test_expected_matches_sampling_on_a_large_tie():
    # one query, 60 candidates with 3 score levels: compare the closed form with many shuffles
    rng = np.random.default_rng(7)
    scores = np.repeat([3, 2, 1], 20)
    rel = rng.random(60) < 0.4
    groups = _groups([scores.tolist()], [rel.tolist()])
    for variant, fn in AP.items():
        for k in (10, 25):
            samples = []
            for _ in range(4000):
                order = np.concatenate([rng.permutation(np.flatnonzero(scores == v)) for v in (3, 2, 1)])
                samples.append(fn(rel[order].tolist(), k))
            got = metrics.average_precision(groups, k, variant, "expected")[0]
            se = np.std(samples) / math.sqrt(len(samples))
            assert abs(got - np.mean(samples)) < 5 * se + 1e-9, (variant, k)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_relevance_parts_equal_the_whole_matrix(seed):
    """totals / at / count_where (the top-k path) agree with the full relevance block, both directions."""
    rng = np.random.default_rng(seed)
    n_img, n_classes = 23, 70  # 70 classes: two 64-bit words per label set
    c2i = torch.from_numpy(rng.permutation(np.repeat(np.arange(n_img), rng.integers(1, 5, size=n_img))))
    labels = torch.from_numpy((rng.random((n_img, n_classes)) < 0.05).astype(np.float32))
    labels[0] = 0  # an image with no label is relevant to nothing
    for rel in (
        relevance.label_relevance(labels, labels, candidate_map=c2i),
        relevance.label_relevance(labels, labels, query_map=c2i),
    ):
        n_q = n_img if rel.query_map is None else len(c2i)
        for start, stop in ((0, n_q), (3, 9)):
            whole = rel(start, stop)
            assert torch.equal(rel.totals(start, stop), whole.sum(1))
            index = torch.from_numpy(rng.integers(0, whole.shape[1], size=(stop - start, 6)))
            assert torch.equal(rel.at(start, stop, index), whole.gather(1, index))
            mask = torch.from_numpy(rng.random(whole.shape) < 0.4)
            assert torch.equal(rel.count_where(start, stop, mask), (mask & whole).sum(1))
            assert torch.equal(rel.count_where(start, stop, mask, max_pairs=3), (mask & whole).sum(1))  # chunked
            shifted = rel.shifted(start)
            assert torch.equal(shifted(0, stop - start), whole)


def _instance_stats(scores, positives):
    best = max(scores[i] for i in positives)
    p = sum(scores[i] == best for i in positives)
    return sum(s > best for s in scores), sum(s == best for s in scores) - p, p


query_strategy = st.integers(min_value=1, max_value=5).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(min_value=0, max_value=2), min_size=n, max_size=n),
        st.sets(st.integers(min_value=0, max_value=n - 1), min_size=1, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(queries=st.lists(query_strategy, min_size=1, max_size=4))
def test_median_rank_matches_every_joint_tie_order(queries):
    """MedR = floor(median(rank - 1)) + 1 averaged over every tie order of every query (jointly)."""
    scores = [q[0] for q in queries]
    positives = [q[1] for q in queries]
    g, t, p = (np.array(x) for x in zip(*(_instance_stats(s, pos) for s, pos in queries), strict=True))
    want = dict(zip(TIES, median_rank_over_orders(scores, positives), strict=True))
    for ties in TIES:
        assert metrics.median_rank_under_ties(g, t, p, ties) == pytest.approx(want[ties], abs=1e-12), (ties, queries)


def _rank_law(g, t, p):
    """P(rank - 1 = y) of one query, from P(X >= j) = C(t, j) / C(t + p, j)."""
    if t == 0 or p == 0:
        return {g + (t if p == 0 else 0): 1.0}
    tail = [math.comb(t, j) / math.comb(t + p, j) for j in range(t + 1)] + [0.0]
    return {g + j: tail[j] - tail[j + 1] for j in range(t + 1)}


def test_median_rank_matches_the_product_of_rank_laws():
    """Wider ties than orders can enumerate: sum over every joint outcome of the per-query rank laws."""
    import itertools

    rng = np.random.default_rng(5)
    for _ in range(150):
        n = int(rng.integers(1, 7))
        g, t, p = rng.integers(0, 6, n), rng.integers(0, 5, n), rng.integers(0, 3, n)
        laws = [list(_rank_law(*x).items()) for x in zip(g.tolist(), t.tolist(), p.tolist(), strict=True)]
        want = 0.0
        for joint in itertools.product(*laws):
            want += math.prod(pr for _, pr in joint) * (math.floor(np.median([y for y, _ in joint])) + 1)
        assert expected_median_rank(g, t, p) == pytest.approx(want, abs=1e-12), (g, t, p)


def test_median_rank_of_an_all_tied_2x2_matrix_is_1_25():
    # each query's positive is first or second with probability 1/2; floor(median) is 1 only when
    # both are second: E[MedR] = 1 + 1/4 (the median of the expected ranks, 1.5, would give 1)
    report = evaluate_similarity(np.ones((2, 2), dtype=np.float32), [0, 1], map_ks=(), device="cpu")
    for direction in ("i2t", "t2i"):
        assert report.instance[direction]["MedR"] == pytest.approx(1.25, abs=1e-12)
        assert report.instance[direction]["MeanR"] == pytest.approx(1.5, abs=1e-12)
    for ties, want in (("optimistic", 1.0), ("pessimistic", 2.0)):
        report = evaluate_similarity(np.ones((2, 2), dtype=np.float32), [0, 1], map_ks=(), ties=ties, device="cpu")
        assert report.instance["i2t"]["MedR"] == want


def test_median_rank_expectation_on_heavy_hamming_ties_lies_between_bounds_and_matches_sampling():
    rng = np.random.default_rng(11)
    n_q, n_c = 300, 200
    scores = -rng.integers(0, 6, size=(n_q, n_c))  # a few distance levels: most ranks are random
    positive = rng.integers(0, n_c, size=n_q)
    best = scores[np.arange(n_q), positive][:, None]
    g, eq = (scores > best).sum(1), (scores == best).sum(1)
    p = np.ones(n_q, dtype=np.int64)
    t = eq - 1
    got = metrics.median_rank_under_ties(g, t, p, "expected")
    lo, hi = (metrics.median_rank_under_ties(g, t, p, ties) for ties in ("optimistic", "pessimistic"))
    assert lo <= got <= hi
    samples = [metrics.median_rank(g + rng.integers(0, t + 1) + 1) for _ in range(3000)]  # p = 1: X uniform
    assert abs(got - np.mean(samples)) < 5 * np.std(samples) / math.sqrt(len(samples)) + 1e-9


def test_pr11_expected_is_the_interpolated_expected_curve_not_its_expectation():
    """docs/metrics.md's worked example with positions 2 and 3 tied: PR11 under ties='expected' is
    the interpolation of the expected-count curve (0.75 at recall 0.4); the expectation of the
    interpolated precision over both orders is 0.8333 there. The docs say which one is reported."""
    scores, rel = [6, 5, 5, 3, 2, 1], [1, 1, 0, 0, 0, 1]
    got = metrics.pr11(_groups([scores], [rel]), "expected")[0]
    curve = [1, 1, 1, 1, 0.75, 0.75, 2 / 3, 0.5, 0.5, 0.5, 0.5]
    assert got == pytest.approx(curve, abs=1e-12)
    assert got == pytest.approx(pr11_expected_counts(scores, rel), abs=1e-12)
    over_orders = pr11_expected_over_orders(scores, rel)
    assert over_orders == pytest.approx([1, 1, 1, 1, 5 / 6, 5 / 6, 5 / 6, 0.5, 0.5, 0.5, 0.5], abs=1e-12)


def test_median_rank_too_costly_to_take_exactly_is_null_with_a_warning(monkeypatch):
    import fico_registry.evaluator.expected_median as expected_median

    monkeypatch.setattr(expected_median, "MAX_WORK", 1e3)
    with pytest.warns(UserWarning, match="ties='optimistic' / 'pessimistic'"):
        got = metrics.median_rank_under_ties([0, 0, 0, 0], [50, 50, 50, 50], [1, 1, 1, 1], "expected")
    assert math.isnan(got)


def test_windowed_count_dp_equals_the_full_polynomial_product():
    """expected_median's DP keeps a Hoeffding window of counts once slots are many: compare it with
    the plain product of (a z + h) over 400 slots, at counts near and far from the mean."""
    from fico_registry.evaluator.expected_median import _count_pmf

    rng = np.random.default_rng(2)
    a = rng.random((3, 400)) * 0.6
    h = (1 - a) * np.array([[1.0], [0.999], [0.99]])  # rows 2, 3 lose mass: an excluded event
    full = np.ones((3, 1))
    for s in range(400):
        nxt = np.zeros((3, full.shape[1] + 1))
        nxt[:, :-1] += full * h[:, s : s + 1]
        nxt[:, 1:] += full * a[:, s : s + 1]
        full = nxt
    mean = a.sum(1)
    for shift in (-40, -3, 0, 5, 40):
        need = np.round(mean).astype(np.int64) + shift
        at, upto = _count_pmf(a, h, need)
        assert at == pytest.approx(full[np.arange(3), need], abs=1e-15, rel=1e-9)
        assert upto == pytest.approx(np.array([full[i, : need[i] + 1].sum() for i in range(3)]), abs=1e-15, rel=1e-9)
