"""Retrieval metrics as pure functions over rank statistics, exact under ties.

Instance level, per query: g = candidates scored strictly above the best positive, t = other
(negative) candidates tied with it, p = positives tied at that best score.

Category level, per query, the ranked list is cut into tie groups (runs of equal score). Only
groups holding relevant items matter; each is described by
    a  = items ranked strictly above the group,   n  = group size,
    r  = relevant items in the group,             Rb = relevant items strictly above it.
Every metric below is a closed form in these numbers, for three tie policies:
    "expected"    the exact expectation over a uniformly random order within each tie group
                  (PR11: the interpolation of the expected curve, see pr11),
    "optimistic"  relevant items first within each tie group,
    "pessimistic" relevant items last.
Formulas and a worked example are in docs/metrics.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import digamma, gammaln

from fico_registry.errors import OptionError
from fico_registry.evaluator.expected_median import expected_median_rank

TIES = ("expected", "optimistic", "pessimistic")
MAP_VARIANTS = ("fico", "dcmh", "apk")
PR_LEVELS = 11


def check_ties(ties: str) -> None:
    if ties not in TIES:
        raise OptionError(f"ties must be one of {', '.join(TIES)}; got {ties!r}")


def check_variant(variant: str) -> None:
    if variant not in MAP_VARIANTS:
        raise OptionError(f"map_variant must be one of {', '.join(MAP_VARIANTS)}; got {variant!r}")


# -- instance level -------------------------------------------------------------------------------


def ranks(g: np.ndarray, t: np.ndarray, p: np.ndarray, ties: str) -> np.ndarray:
    """1-based rank of the first positive (its expectation under ties='expected')."""
    g, t, p = (np.asarray(x, dtype=np.float64) for x in (g, t, p))
    if ties == "optimistic":
        return g + 1
    if ties == "pessimistic":
        return g + t + 1
    # first positive among t negatives and p positives in random order: E[X] = (t+p+1)/(p+1)
    return g + (t + p + 1) / (p + 1)


def recall_at(g: np.ndarray, t: np.ndarray, p: np.ndarray, k: int, ties: str) -> np.ndarray:
    """Per query: 1 if a positive is in the top k (its probability under ties='expected')."""
    g, t, p = (np.asarray(x, dtype=np.int64) for x in (g, t, p))
    if ties == "optimistic":
        return (g + 1 <= k).astype(np.float64)
    if ties == "pessimistic":
        return (g + t + 1 <= k).astype(np.float64)
    # P(X <= j) = 1 - C(t, j) / C(t+p, j): the first j of the tied block are all negatives otherwise
    j = k - g
    out = np.where(j > t, 1.0, 0.0)
    mid = (j >= 1) & (j <= t)
    if mid.any():
        jm, tm, pm = j[mid].astype(np.float64), t[mid].astype(np.float64), p[mid].astype(np.float64)
        log_all_negative = gammaln(tm + 1) - gammaln(tm - jm + 1) - gammaln(tm + pm + 1) + gammaln(tm + pm - jm + 1)
        out[mid] = 1.0 - np.exp(log_all_negative)
    return out


def median_rank(rank: np.ndarray) -> float:
    """FiCo-ITR / VSE convention: floor(median of 0-based ranks) + 1, for one fixed order."""
    return float(np.floor(np.median(rank - 1)) + 1)


def median_rank_under_ties(g: np.ndarray, t: np.ndarray, p: np.ndarray, ties: str) -> float:
    """MedR of the queries (g, t, p as in `ranks`) under a tie policy.

    optimistic / pessimistic: median_rank of the bracketing ranks. expected: the exact expectation
    of median_rank over random tie orders (not the median of expected ranks, which differs: a 2 x 2
    all-tied matrix has E[MedR] = 1.25, median of expected ranks 1.5 -> 1.0); see expected_median.
    """
    check_ties(ties)
    if ties != "expected":
        return median_rank(ranks(g, t, p, ties))
    return expected_median_rank(g, t, p)


# -- category level: tie groups ---------------------------------------------------------------------


@dataclass
class Groups:
    """Tie groups holding at least one relevant item, for a block of queries, in rank order
    (rows ascending, and by position within each row)."""

    row: np.ndarray  # query (row of the block) each group belongs to
    a: np.ndarray
    n: np.ndarray
    r: np.ndarray
    rb: np.ndarray
    relevant: np.ndarray  # (n_rows,) relevant items per query, R
    n_candidates: int
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n_rows(self) -> int:
        return len(self.relevant)

    def select(self, mask: np.ndarray) -> Groups:
        return Groups(
            self.row[mask], self.a[mask], self.n[mask], self.r[mask], self.rb[mask], self.relevant, self.n_candidates
        )

    @property
    def offsets(self) -> np.ndarray:
        """(n_rows + 1,): row q's groups are [offsets[q], offsets[q + 1])."""
        if "offsets" not in self._memo:
            self._memo["offsets"] = np.searchsorted(self.row, np.arange(self.n_rows + 1))
        return self._memo["offsets"]

    @property
    def tied(self) -> np.ndarray:
        """Indices of the groups of more than one item (the rest have n = r = 1)."""
        if "tied" not in self._memo:
            self._memo["tied"] = np.flatnonzero(self.n > 1)
        return self._memo["tied"]

    def single_precision(self) -> np.ndarray:
        """(rb + 1) / (a + 1): the precision at each group's first item, exact for single-item groups.

        Shared by mAP@N and PR11, which otherwise repeat the same passes over every group.
        """
        if "precision" not in self._memo:
            p = self.rb.astype(np.float64)
            p += 1
            p /= self.a + 1
            self._memo["precision"] = p
        return self._memo["precision"]

    def head(self, k: int) -> Groups:
        """The groups that start inside the top k (a < k): a prefix of each row, found by bisection."""
        starts = self.offsets[:-1]
        cut = _lower_bound(lambda i: self.a[i], starts, self.offsets[1:], k)
        idx = _ragged_range(starts, cut - starts)
        return Groups(
            self.row[idx], self.a[idx], self.n[idx], self.r[idx], self.rb[idx], self.relevant, self.n_candidates
        )


def _lower_bound(value_at, lo: np.ndarray, hi: np.ndarray, target) -> np.ndarray:
    """Per search, the first index i in [lo, hi) with value_at(i) >= target (hi if none).

    value_at must be non-decreasing on each [lo, hi); vectorised bisection, log2(hi - lo) rounds
    over the searches only (never a pass over the whole array).
    """
    lo, hi = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)
    target = np.broadcast_to(target, lo.shape)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) >> 1
        below = active & (value_at(np.where(active, mid, 0)) < target)
        lo = np.where(below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)


def _ragged_range(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ranges [starts[q], starts[q] + lengths[q])."""
    total = int(lengths.sum())
    shift = starts - (np.cumsum(lengths) - lengths)
    return np.arange(total, dtype=np.int64) + np.repeat(shift, lengths)


def _h(x: np.ndarray) -> np.ndarray:
    """Harmonic number H(x) = sum_{i<=x} 1/i, for integer x >= 0 (digamma keeps it vectorised)."""
    return digamma(np.asarray(x, dtype=np.float64) + 1.0) + np.euler_gamma


def _harmonic_span(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """sum_{q=a+1}^{a+m} 1/q."""
    return _h(a + m) - _h(a)


def expected_group_sum(a, n, r, rb, m=None) -> np.ndarray:
    """E[ sum over relevant items in the first m positions of a group of (relevant so far)/(position) ].

    With the group in random order, position a+q is relevant with probability r/n and, given
    that, has 1 + (q-1)(r-1)/(n-1) relevant items at or before it within the group, so the sum
    is (r/n) * sum_{q=1}^{m} (rb + 1 + (q-1)(r-1)/(n-1)) / (a+q), which telescopes into
    harmonic numbers. m defaults to n (the whole group).
    """
    a, n, r, rb = np.broadcast_arrays(a, n, r, rb)
    m = n if m is None else np.broadcast_to(m, n.shape)
    out = (rb + 1) / (a + 1)  # single-item groups (no tie): the usual precision term
    out *= r
    tied = n > 1
    if tied.any():
        a, n, r, rb, m = (np.asarray(x[tied], dtype=np.float64) for x in (a, n, r, rb, m))
        d1 = _harmonic_span(a, m)
        d2 = m - (a + 1) * d1  # sum (q-1)/(a+q)
        out = out.copy()
        out[tied] = (r / n) * ((rb + 1) * d1 + (r - 1) / (n - 1) * d2)
    return out


def fixed_order_sum(x, c, rb) -> np.ndarray:
    """sum_{i=1}^{c} (rb + i) / (x + i): c relevant items at positions x+1..x+c after rb others."""
    x, c, rb = (np.asarray(v, dtype=np.float64) for v in (x, c, rb))
    return c + (rb - x) * _harmonic_span(x, c)


def _fixed_offset(groups: Groups, ties: str) -> np.ndarray:
    """Where the relevant run of each group starts (optimistic: first, pessimistic: last)."""
    return groups.a if ties == "optimistic" else groups.a + groups.n - groups.r


def average_precision(groups: Groups, k: int | None, variant: str, ties: str) -> np.ndarray:
    """Per-query AP@k (k=None: the whole ranking) for one of the named variants.

    fico  mean of precision@i over relevant positions i <= k (0 if none) — FiCo-ITR, DeepHash CalcTopMap
    apk   sum of precision@i over relevant positions i <= k, divided by min(k, R) — ml_metrics apk
    dcmh  mean of j / pos_j over the first min(k, R) relevant items anywhere — DCMH calc_map_k
    """
    check_variant(variant)
    check_ties(ties)
    k = groups.n_candidates if k is None else min(int(k), groups.n_candidates)
    if variant == "dcmh":
        return _dcmh(groups, k, ties)
    if k < groups.n_candidates:
        groups = groups.head(k)  # only groups starting inside the top k contribute
    a, n, r, rb = groups.a, groups.n, groups.r, groups.rb
    if k >= groups.n_candidates:  # the whole ranking: every group is inside
        full = slice(None)
        cut = np.zeros(len(a), dtype=bool)
    else:
        full = a + n <= k
        cut = (a < k) & ~full  # the group straddling position k (at most one per query)
    if ties == "expected" and isinstance(full, slice):
        contrib = _whole_expected_sums(groups)
    elif ties == "expected":
        contrib = expected_group_sum(a[full], n[full], r[full], rb[full])
    else:
        contrib = fixed_order_sum(_fixed_offset(groups, ties)[full], r[full], rb[full])
    s_prev = np.bincount(groups.row[full], weights=contrib, minlength=groups.n_rows).astype(np.float64)
    if isinstance(full, slice):
        r_prev = np.asarray(groups.relevant, dtype=np.float64)
    else:
        r_prev = np.bincount(groups.row[full], weights=r[full], minlength=groups.n_rows).astype(np.float64)
    numer, count = s_prev.copy(), r_prev.copy()
    ap = np.zeros(groups.n_rows)
    cut_rows = groups.row[cut]
    if variant == "apk":
        if ties == "expected":
            numer[cut_rows] += expected_group_sum(a[cut], n[cut], r[cut], rb[cut], m=k - a[cut])
        else:
            start = _fixed_offset(groups, ties)[cut]
            inside = np.clip(k - start, 0, r[cut])
            numer[cut_rows] += fixed_order_sum(start, inside, rb[cut])
        denom = np.minimum(k, groups.relevant).astype(np.float64)
        np.divide(numer, denom, out=ap, where=denom > 0)
        return ap
    # fico: the denominator (relevant items in the top k) is random when a tie straddles k
    if ties == "expected":
        straddle = _fico_straddle_expectation(a[cut], n[cut], r[cut], rb[cut], k, s_prev[cut_rows], r_prev[cut_rows])
        plain = np.ones(groups.n_rows, dtype=bool)
        plain[cut_rows] = False
        np.divide(numer, count, out=ap, where=plain & (count > 0))
        ap[cut_rows] = straddle
        return ap
    start = _fixed_offset(groups, ties)[cut]
    inside = np.clip(k - start, 0, r[cut])
    numer[cut_rows] += fixed_order_sum(start, inside, rb[cut])
    count[cut_rows] += inside
    np.divide(numer, count, out=ap, where=count > 0)
    return ap


def _whole_expected_sums(groups: Groups) -> np.ndarray:
    """expected_group_sum of every whole group: the single-item precision, tie groups patched."""
    out = groups.single_precision().copy()
    t = groups.tied
    out[t] = expected_group_sum(groups.a[t], groups.n[t], groups.r[t], groups.rb[t])
    return out


def _fico_straddle_expectation(a, n, r, rb, k, s_prev, r_prev) -> np.ndarray:
    """E[(S_prev + S_cut) / (R_prev + H)] where H ~ Hypergeometric(n, r, m = k - a) relevant items
    of the straddling group land in the top k; given H = h they sit uniformly in its first m slots."""
    if len(a) == 0:
        return np.zeros(0)
    a, n, r, rb = (np.asarray(x, dtype=np.float64) for x in (a, n, r, rb))
    m = k - a
    h_max = int(np.minimum(r, m).max())
    h = np.arange(h_max + 1, dtype=np.float64)[None, :]
    a_, n_, r_, rb_, m_ = (x[:, None] for x in (a, n, r, rb, m))
    valid = (h <= np.minimum(r_, m_)) & (h >= m_ - (n_ - r_))
    log_pmf = _log_comb(r_, h) + _log_comb(n_ - r_, m_ - h) - _log_comb(n_, m_)
    pmf = np.where(valid, np.exp(np.where(valid, log_pmf, 0.0)), 0.0)
    # the h relevant items sit uniformly among the first m slots of the group
    with np.errstate(invalid="ignore", divide="ignore"):
        s_cut = np.where(valid, expected_group_sum(a_, m_, h, rb_), 0.0)
    denom = r_prev[:, None] + h
    value = np.divide(s_prev[:, None] + s_cut, denom, out=np.zeros_like(pmf), where=denom > 0)
    return (pmf * value).sum(axis=1)


def _log_comb(n, k):
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return gammaln(n + 1) - gammaln(k + 1) - gammaln(np.maximum(n - k, 0) + 1)


def _dcmh(groups: Groups, k: int, ties: str) -> np.ndarray:
    """(1/T) sum_{j<=T} j / pos_j with T = min(k, R): the first T relevant items wherever they are."""
    t_row = np.minimum(k, groups.relevant)
    t = t_row[groups.row]
    a, n, r, rb = groups.a, groups.n, groups.r, groups.rb
    full = rb + r <= t
    cut = (rb < t) & ~full
    if ties == "expected":
        contrib = expected_group_sum(a[full], n[full], r[full], rb[full])
    else:
        contrib = fixed_order_sum(_fixed_offset(groups, ties)[full], r[full], rb[full])
    total = np.bincount(groups.row[full], weights=contrib, minlength=groups.n_rows).astype(np.float64)
    c = t[cut] - rb[cut]
    if ties == "expected":
        extra = _expected_first_c(a[cut], n[cut], r[cut], rb[cut], c)
    else:
        extra = fixed_order_sum(_fixed_offset(groups, ties)[cut], c, rb[cut])
    total += np.bincount(groups.row[cut], weights=extra, minlength=groups.n_rows)
    ap = np.zeros(groups.n_rows)
    np.divide(total, t_row, out=ap, where=t_row > 0)
    return ap


def _expected_first_c(a, n, r, rb, c, max_cells: int = 4_000_000) -> np.ndarray:
    """E[ sum_{i=1}^{c} (rb + i) / (a + p_i) ], p_i the i-th smallest of a random r-subset of 1..n.

    P(p_i = q) = C(q-1, i-1) C(n-q, r-i) / C(n, r); evaluated on an (i, q) grid per group, in
    chunks so memory stays bounded. Only the one group per query that holds the T-th relevant
    item needs this.
    """
    out = np.zeros(len(a))
    if len(a) == 0:
        return out
    a, n, r, rb, c = (np.asarray(x, dtype=np.float64) for x in (a, n, r, rb, c))
    order = np.argsort(n * c)
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * n[order[stop]] * c[order[stop]] <= max_cells:
            stop += 1
        idx = order[start:stop]
        q_max, i_max = int(n[idx].max()), int(c[idx].max())
        q = np.arange(1, q_max + 1, dtype=np.float64)[None, None, :]
        i = np.arange(1, i_max + 1, dtype=np.float64)[None, :, None]
        a_, n_, r_, rb_, c_ = (x[idx][:, None, None] for x in (a, n, r, rb, c))
        valid = (q <= n_) & (i <= c_) & (q >= i) & (n_ - q >= r_ - i)
        log_p = _log_comb(q - 1, i - 1) + _log_comb(n_ - q, r_ - i) - _log_comb(n_, r_)
        p = np.where(valid, np.exp(np.where(valid, log_p, 0.0)), 0.0)
        out[idx] = (p * (rb_ + i) / (a_ + q)).sum(axis=(1, 2))
        start = stop
    return out


def pr11(groups: Groups, ties: str) -> np.ndarray:
    """11-point interpolated precision (recall 0.0, 0.1, ..., 1.0) per query; NaN rows have R = 0.

    Interpolated precision at level l is the highest precision at any cut-off whose recall is at
    least l. With ties='expected' the curve is that of the expected counts: inside a tie group the
    expected number of relevant items grows linearly (McSherry & Najork). That is the interpolated
    expected curve, not the expectation of the interpolated precision (a maximum: the expected
    curve's is at most the expected one; docs/metrics.md, worked example: 0.75 vs 0.8333).
    optimistic / pessimistic use the actual bracketing orders.
    """
    check_ties(ties)
    n_rows = groups.n_rows
    out = np.full((n_rows, PR_LEVELS), np.nan)
    if len(groups.row) == 0:
        return out
    a, n, r, rb = (np.asarray(x, dtype=np.int64) for x in (groups.a, groups.n, groups.r, groups.rb))
    big_r = np.asarray(groups.relevant, dtype=np.int64)
    # Precision is monotone inside a group, so a group's best is at its first or last point.
    if ties == "expected":
        start = a
        best = groups.single_precision().copy()  # first = last for single items
        t = groups.tied
        best[t] = np.maximum((rb[t] + r[t] / n[t]) / (a[t] + 1), (rb[t] + r[t]) / (a[t] + n[t]))

        def last_at(g: np.ndarray) -> np.ndarray:
            return (rb[g] + r[g]) / (a[g] + n[g])
    else:
        start = _fixed_offset(groups, ties).astype(np.int64)
        last = (rb + r) / (start + r)
        best = np.maximum((rb + 1) / (start + 1), last)

        def last_at(g: np.ndarray) -> np.ndarray:
            return last[g]

    offsets = groups.offsets
    ends = offsets[1:]
    # targets in units of R/10 so every level's target is an exact integer
    level = np.arange(PR_LEVELS, dtype=np.int64)[None, :]
    if ties == "expected":
        target10 = level * big_r[:, None]  # expected counts are fractional: recall >= level/10 exactly
    else:
        target10 = 10 * np.maximum(-((-level * big_r[:, None]) // 10), 1)  # whole items, at least one
    # the group where each level is reached: the first whose cumulative relevant count gets there
    lo = np.repeat(offsets[:-1, None], PR_LEVELS, axis=1)
    hi = np.repeat(ends[:, None], PR_LEVELS, axis=1)
    crossing = _lower_bound(lambda i: 10 * (rb[i] + r[i]), lo, hi, target10)
    valid = (big_r[:, None] > 0) & (crossing < hi)
    crossing = np.where(valid, crossing, hi)
    later = _max_after_crossings(best, crossing, ends)
    g = crossing[valid]
    t10 = target10[valid]
    if ties == "expected":
        # first position q in the group with 10 (rb + q r / n) >= t10, in integer arithmetic
        q = np.clip(-((-(t10 - 10 * rb[g]) * n[g]) // (10 * r[g])), 1, n[g])
        at_cross = (rb[g] + q * r[g] / n[g]) / (a[g] + q)
    else:
        j = np.maximum(t10 // 10, rb[g] + 1)
        at_cross = j / (start[g] + (j - rb[g]))
    # the crossing group counts from the crossing point on; later groups entirely
    out[valid] = np.maximum(np.maximum(at_cross, last_at(g)), later[valid])
    return out


def _max_after_crossings(values: np.ndarray, crossing: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """later[q, l] = max of `values` over the groups of query q after group crossing[q, l].

    crossing is non-decreasing along levels, so the groups after it split into 11 consecutive
    segments per query: one reduceat pass gives each segment's max, a suffix max over the
    (n_rows, 11) table the rest. Exact, and linear in the number of groups.
    """
    n_rows, n_levels = crossing.shape
    starts = np.minimum(crossing + 1, ends[:, None])
    bounds = np.concatenate([starts, ends[:, None]], axis=1).ravel()
    padded = np.append(values, -np.inf)  # so a bound may point one past the last group
    seg = np.maximum.reduceat(padded, bounds)[:-1] if len(bounds) else np.zeros(0)
    seg = np.append(seg, -np.inf).reshape(n_rows, n_levels + 1)[:, :n_levels]
    empty = bounds.reshape(n_rows, n_levels + 1)
    seg[empty[:, 1:] <= empty[:, :-1]] = -np.inf  # reduceat returns values[i] for an empty range
    return np.maximum.accumulate(seg[:, ::-1], axis=1)[:, ::-1]
