"""A slow, obviously correct evaluator for small inputs: exact scores, every tie order enumerated.

It shares no code with the engine or fico_registry.evaluator.metrics: scores are exact rationals
(fractions.Fraction of the float inputs), rankings are explicit orders, and under
ties="expected" each metric is the plain mean over every order consistent with the ties.
fico_registry.plugin_api.fuzzing compares the evaluator against it; plugin authors may do the same.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

MAX_ORDERS = 5040  # tie orders enumerated per query row (7!); above it a row is "too tied" to brute force


class TooManyOrders(Exception):
    """A row has more tie orders than MAX_ORDERS: brute force is not attempted."""


def exact_matrix(x: Any) -> list[list[Any]]:
    """A 2-d array as nested lists of exact numbers (ints stay ints, floats become Fractions)."""
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        return [[Fraction(float(v)) for v in row] for row in arr.astype(np.float64)]
    return [[int(v) for v in row] for row in arr.tolist()]


def embedding_scores(images: Any, texts: Any, measure: str, bits: int | None = None) -> list[list[Any]]:
    """Exact i2t scores (n_images, n_texts), higher = more similar; cosine as sign(cos) * cos**2."""
    img, txt = np.asarray(images), np.asarray(texts)
    if measure == "hamming":
        a, b = _bit_rows(img, bits), _bit_rows(txt, bits)
        return [[-sum(x != y for x, y in zip(p, q, strict=True)) for q in b] for p in a]
    if measure == "maxsim":
        vectors = [exact_matrix(v) for v in img]
        t = exact_matrix(txt)
        return [[max(_dot(v, c) for v in vs) for c in t] for vs in vectors]
    i, t = exact_matrix(img), exact_matrix(txt)
    if measure == "inner_product":
        return [[_dot(p, q) for q in t] for p in i]
    if measure == "euclidean":
        return [[-sum((x - y) ** 2 for x, y in zip(p, q, strict=True)) for q in t] for p in i]
    if measure == "cosine":
        out = []
        for p in i:
            row = []
            for q in t:
                d = _dot(p, q)
                row.append((1 if d > 0 else -1) * Fraction(d * d) / (_dot(p, p) * _dot(q, q)))
            out.append(row)
        return out
    raise ValueError(f"unknown measure {measure!r}")


def _dot(p: Sequence[Any], q: Sequence[Any]) -> Any:
    return sum((x * y for x, y in zip(p, q, strict=True)), 0)


def _bit_rows(codes: np.ndarray, bits: int | None) -> list[list[int]]:
    if codes.dtype == np.uint8 and bits is not None and codes.shape[1] == (bits + 7) // 8 and codes.shape[1] != bits:
        return np.unpackbits(codes, axis=1)[:, :bits].astype(int).tolist()
    if codes.dtype == np.uint8 and bits is None and codes.max(initial=0) > 1:
        return np.unpackbits(codes, axis=1).astype(int).tolist()
    return (codes > 0).astype(int).tolist()


def tie_orders(scores: Sequence[Any]) -> list[list[int]]:
    """Every order of the indices consistent with descending scores (ties permuted)."""
    distinct = sorted(set(scores), reverse=True)
    groups = [[i for i, s in enumerate(scores) if s == v] for v in distinct]
    if math.prod(math.factorial(len(g)) for g in groups) > MAX_ORDERS:
        raise TooManyOrders(f"{len(scores)} candidates with ties of sizes {[len(g) for g in groups]}")
    return [[i for p in perms for i in p] for perms in itertools.product(*(itertools.permutations(g) for g in groups))]


def bracket_order(scores: Sequence[Any], good: Sequence[bool], optimistic: bool) -> list[int]:
    """Ties broken with the `good` items first (optimistic) or last (pessimistic)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], (not good[i]) if optimistic else good[i]))


def _by_policy(
    scores: Sequence[Any], good: Sequence[bool], fn: Callable[[list[int]], float | Fraction], ties: str
) -> float:
    if ties == "expected":
        orders = tie_orders(scores)
        return float(sum(Fraction(fn(o)) for o in orders) / len(orders))
    return float(fn(bracket_order(scores, good, ties == "optimistic")))


def _first_rank(order: list[int], positives: set[int]) -> int:
    return next(r for r, item in enumerate(order, start=1) if item in positives)


def _hit_at(order: list[int], positives: set[int], k: int) -> float:
    return float(_first_rank(order, positives) <= k)


def _order_ap(order: list[int], relevant: list[bool], k: int, variant: str) -> Fraction:
    return average_precision([relevant[j] for j in order], k, variant)


def average_precision(rel_in_order: list[bool], k: int, variant: str) -> Fraction:
    n_rel = sum(rel_in_order)
    hits, total = 0, Fraction(0)
    if variant == "dcmh":
        positions = [i for i, r in enumerate(rel_in_order, start=1) if r][: min(k, n_rel)]
        if not positions:
            return Fraction(0)
        return sum((Fraction(j, p) for j, p in enumerate(positions, start=1)), Fraction(0)) / len(positions)
    for i, r in enumerate(rel_in_order[:k], start=1):
        if r:
            hits += 1
            total += Fraction(hits, i)
    if variant == "fico":
        return total / hits if hits else Fraction(0)
    return total / min(k, n_rel) if n_rel else Fraction(0)  # apk


def pr11(rel_in_order: list[bool]) -> list[float] | None:
    """11-point interpolated precision of one order (None without relevant items)."""
    n_rel = sum(rel_in_order)
    if n_rel == 0:
        return None
    cum = list(itertools.accumulate(int(r) for r in rel_in_order))
    out = []
    for level in range(11):
        ok = [Fraction(c, i) for i, c in enumerate(cum, start=1) if 10 * c >= level * n_rel]
        out.append(float(max(ok)) if ok else 0.0)
    return out


def direction(
    scores: list[list[Any]],
    positives: list[set[int]],
    relevant: list[list[bool]] | None,
    *,
    recall_ks: Sequence[int],
    map_ks: Sequence[int | None],
    ties: str,
    variant: str,
) -> dict[str, Any]:
    """Instance and category metrics of one direction, as the evaluator names them."""
    n_c = len(scores[0])
    ranks = []
    hits: dict[int, list[float]] = {k: [] for k in recall_ks}
    for row, pos in zip(scores, positives, strict=True):
        is_pos = [j in pos for j in range(n_c)]
        ranks.append(_by_policy(row, is_pos, functools.partial(_first_rank, positives=pos), ties))
        for k in recall_ks:
            hits[k].append(_by_policy(row, is_pos, functools.partial(_hit_at, positives=pos, k=k), ties))
    instance = {f"R@{k}": float(np.mean(hits[k])) for k in recall_ks}
    instance["MeanR"] = float(np.mean(ranks))
    instance["MedR"] = float(math.floor(np.median(np.asarray(ranks) - 1)) + 1)
    if relevant is None:
        return {"instance": instance, "category": None}
    category: dict[str, Any] = {}
    for map_k in map_ks:
        kk = n_c if map_k is None else min(map_k, n_c)
        aps = [
            _by_policy(row, rel, functools.partial(_order_ap, relevant=rel, k=kk, variant=variant), ties)
            for row, rel in zip(scores, relevant, strict=True)
        ]
        category["mAP@N" if map_k is None else f"mAP@{map_k}"] = float(np.mean(aps))
    if ties != "expected":  # PR11 of a bracketing order (its expectation is defined in docs/metrics.md)
        orders = [bracket_order(row, rel, ties == "optimistic") for row, rel in zip(scores, relevant, strict=True)]
        curves = [pr11([rel[j] for j in order]) for order, rel in zip(orders, relevant, strict=True)]
        valid = [c for c in curves if c is not None]
        category["PR11"] = np.mean(valid, axis=0).tolist() if valid else None
    return {"instance": instance, "category": category}


def evaluate(
    i2t: list[list[Any]],
    caption_to_image: Sequence[int],
    t2i: list[list[Any]] | None = None,
    labels: Any = None,
    *,
    recall_ks: Sequence[int] = (1, 5, 10),
    map_ks: Sequence[int | None] = (10, 100, None),
    ties: str = "expected",
    map_variant: str = "fico",
) -> dict[str, dict[str, Any]]:
    """Both directions from exact score matrices: {"i2t": {"instance": ..., "category": ...}, "t2i": ...}."""
    n_i, n_t = len(i2t), len(i2t[0])
    c2i = [int(c) for c in caption_to_image]
    t2i = t2i if t2i is not None else [[i2t[i][j] for i in range(n_i)] for j in range(n_t)]
    pos_i2t = [{j for j in range(n_t) if c2i[j] == i} for i in range(n_i)]
    pos_t2i = [{c2i[j]} for j in range(n_t)]
    rel_i2t = rel_t2i = None
    if labels is not None:
        lab = np.asarray(labels) > 0
        share = (lab.astype(int) @ lab.T.astype(int)) > 0  # image x image: at least one label in common
        rel_i2t = [[bool(share[i, c2i[j]]) for j in range(n_t)] for i in range(n_i)]
        rel_t2i = [[bool(share[c2i[j], i]) for i in range(n_i)] for j in range(n_t)]
    return {
        "i2t": direction(i2t, pos_i2t, rel_i2t, recall_ks=recall_ks, map_ks=map_ks, ties=ties, variant=map_variant),
        "t2i": direction(t2i, pos_t2i, rel_t2i, recall_ks=recall_ks, map_ks=map_ks, ties=ties, variant=map_variant),
    }
