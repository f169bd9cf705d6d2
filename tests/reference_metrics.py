"""Slow, obviously-correct reference metrics for tests: explicit orders, explicit loops.

Nothing here shares code with fico_registry.evaluator.metrics.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np


def tie_orders(scores, cap=50_000):
    """Every order of indices consistent with descending scores (ties permuted)."""
    scores = list(scores)
    distinct = sorted(set(scores), reverse=True)
    groups = [[i for i, s in enumerate(scores) if s == v] for v in distinct]
    total = math.prod(math.factorial(len(g)) for g in groups)
    assert total <= cap, f"{total} orders is too many for brute force"
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [i for p in perms for i in p]


def bracket_order(scores, relevant, optimistic):
    """Ties broken with relevant items first (optimistic) or last (pessimistic)."""
    key = (lambda i: (-scores[i], not relevant[i])) if optimistic else (lambda i: (-scores[i], relevant[i]))
    return sorted(range(len(scores)), key=key)


def ap_fico(rel_in_order, k):
    rel = rel_in_order[:k]
    hits, total = 0, 0.0
    for i, r in enumerate(rel, start=1):
        if r:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0


def ap_apk(rel_in_order, k):
    n_rel = sum(rel_in_order)
    if n_rel == 0:
        return 0.0
    hits, total = 0, 0.0
    for i, r in enumerate(rel_in_order[:k], start=1):
        if r:
            hits += 1
            total += hits / i
    return total / min(k, n_rel)


def ap_dcmh(rel_in_order, k):
    n_rel = sum(rel_in_order)
    if n_rel == 0:
        return 0.0
    t = min(k, n_rel)
    positions = [i for i, r in enumerate(rel_in_order, start=1) if r][:t]
    return sum(j / p for j, p in enumerate(positions, start=1)) / t


AP = {"fico": ap_fico, "apk": ap_apk, "dcmh": ap_dcmh}


def first_positive_rank(order, positives):
    for i, item in enumerate(order, start=1):
        if item in positives:
            return i
    raise AssertionError("no positive")


def metric_by_policy(scores, relevant, fn, policy):
    """fn(order) under a tie policy: mean over all tie orders, or a bracketing order."""
    if policy == "expected":
        values = [fn(order) for order in tie_orders(scores)]
        return float(np.mean(values))
    return fn(bracket_order(scores, relevant, policy == "optimistic"))


def pr11_expected_counts(scores, relevant):
    """11-point interpolated precision of the expected-count curve (average cumrel over orders)."""
    orders = list(tie_orders(scores))
    n = len(scores)
    cum = np.zeros(n)
    for order in orders:
        cum += np.cumsum([relevant[i] for i in order])
    cum /= len(orders)
    return _interpolate(cum, sum(relevant))


def pr11_order(order, relevant):
    cum = np.cumsum([relevant[i] for i in order]).astype(float)
    return _interpolate(cum, sum(relevant))


def _interpolate(cum, n_rel):
    if n_rel == 0:
        return [math.nan] * 11
    pos = np.arange(1, len(cum) + 1)
    precision = cum / pos
    out = []
    for level in range(11):
        # exact comparison: recall >= level/10  <=>  10 * cum >= level * R
        ok = 10 * cum >= level * n_rel - 1e-9
        if level == 0:
            ok = np.ones_like(ok, dtype=bool)
        out.append(float(precision[ok].max()) if ok.any() else 0.0)
    return out


def exact_fraction_mean(values):
    return sum(Fraction(v) for v in values) / len(values)


def median_rank_over_orders(score_rows, positive_rows):
    """E[floor(median(rank - 1)) + 1] over every joint tie order of every query's row (FiCo-ITR MedR).

    Returns (expected, optimistic, pessimistic); each query's rank is that of its first positive.
    """
    per_query = []
    for scores, positives in zip(score_rows, positive_rows, strict=True):
        per_query.append([first_positive_rank(order, positives) for order in tie_orders(scores)])
    total = math.prod(len(r) for r in per_query)
    assert total <= 200_000, f"{total} joint orders is too many for brute force"
    expected = Fraction(0)
    for joint in itertools.product(*per_query):
        expected += Fraction(math.floor(np.median(np.array(joint) - 1)) + 1)
    expected /= total
    optimistic = math.floor(np.median([min(r) - 1 for r in per_query])) + 1
    pessimistic = math.floor(np.median([max(r) - 1 for r in per_query])) + 1
    return float(expected), optimistic, pessimistic


def pr11_expected_over_orders(scores, relevant):
    """The true expectation of the 11-point interpolated precision over every tie order."""
    curves = [pr11_order(order, relevant) for order in tie_orders(scores)]
    return np.mean(curves, axis=0).tolist()
