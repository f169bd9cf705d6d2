"""Optional compiled kernels for Hamming codes (numba): histograms and top-k at the popcount limit.

numba is an optional extra (`pip install 'fico-registry[fast-hamming]'`); without it `kernels()`
returns None and fico_registry.evaluator.hamming uses its numpy / torch path, which gives identical
numbers. Codes arrive as uint64 words (n, words); label sets as uint64 words (n, label_words),
zero words when relevance is not counted. Histograms hold 2 * (bits + 1) bins per query: bin
2 d + r counts candidates at distance d whose relevance is r, so every pair costs XOR +
popcount + one counter increment per direction.
"""

from __future__ import annotations

import os
from functools import cache
from types import SimpleNamespace
from typing import Any

# Candidates per tile of the two-direction kernel: the tile's caption histograms (tile x 2(bits+1)
# int32) stay in L2 while every image passes over them (512 x 130 x 4 B = 260 KB at 64 bits).
PAIR_TILE = 512
QUERY_TILE = 2048  # one direction: only the tile's distance and relevance buffers need to stay in L1/L2


def kernels() -> Any:
    """The compiled kernels, or None when numba is missing or FICO_HAMMING_KERNEL=numpy."""
    if os.environ.get("FICO_HAMMING_KERNEL", "").lower() in ("numpy", "torch", "off"):
        return None
    return _compiled()


@cache
def _compiled() -> Any:
    try:
        import numba
    except ImportError:
        return None
    return _build(numba)  # numba compiles each kernel on its first call (seconds), once per process


def _build(numba: Any) -> SimpleNamespace:
    import numpy as np

    njit = numba.njit
    m1, m2, m4 = np.uint64(0x5555555555555555), np.uint64(0x3333333333333333), np.uint64(0x0F0F0F0F0F0F0F0F)
    h01, s1, s2, s4, s56 = np.uint64(0x0101010101010101), np.uint64(1), np.uint64(2), np.uint64(4), np.uint64(56)

    @njit(inline="always")
    def popcount(x):  # the SWAR idiom, which LLVM compiles to one popcnt instruction where the CPU has it
        x = x - ((x >> s1) & m1)
        x = (x & m2) + ((x >> s2) & m2)
        x = (x + (x >> s4)) & m4
        return np.int64((x * h01) >> s56)

    one = np.uint64(1)

    @njit(inline="always")
    def tile_bins(q, i, c_t, q_lab, c_lab_t, j0, j1, bins, rel):
        """bins[x] = 2 * distance + relevant for candidates j0 + x < j1 of query i.

        Candidates are stored word-major (words, n): each pass over one word is a contiguous loop
        over a 1-d slice that LLVM vectorises (10x faster than reading (n, words) rows here).
        Bins are unsigned so the histogram updates below skip numba's negative-index handling
        (20% of the pair kernel's time)."""
        m = j1 - j0
        for x in range(m):
            bins[x] = 0
            rel[x] = 0
        for w in range(q.shape[1]):
            qw, words = q[i, w], c_t[w, j0:j1]
            for x in range(m):
                bins[x] += np.uint64(popcount(qw ^ words[x]))
        for w in range(q_lab.shape[1]):
            lw, words = q_lab[i, w], c_lab_t[w, j0:j1]
            for x in range(m):
                rel[x] |= lw & words[x]
        for x in range(m):
            bins[x] = (bins[x] << one) + np.uint64(rel[x] != 0)

    pair_histograms, query_histograms = _histogram_kernels(numba, tile_bins)
    top_k = _top_k_kernel(numba, popcount)
    return SimpleNamespace(
        pair_histograms=pair_histograms, query_histograms=query_histograms, top_k=top_k,
        threads=numba.get_num_threads, version=numba.__version__,
    )  # fmt: skip


def _histogram_kernels(numba: Any, tile_bins: Any) -> tuple[Any, Any]:
    import numpy as np

    njit, prange = numba.njit, numba.prange

    @njit(parallel=True, nogil=True)
    def pair_histograms(img, txt_t, img_lab, txt_lab_t, n_bins, n_parts):  # pragma: no cover - compiled
        """Both directions in one pass: threads own caption tiles, each keeps its own image histograms."""
        n_i, n_t = img.shape[0], txt_t.shape[1]
        h_txt = np.zeros(n_t * n_bins, np.int32)
        h_img = np.zeros((n_parts, n_i, n_bins), np.int32)
        n_tiles = (n_t + PAIR_TILE - 1) // PAIR_TILE
        width = np.uint64(n_bins)
        for part in prange(n_parts):
            bins = np.empty(PAIR_TILE, np.uint64)
            rel = np.empty(PAIR_TILE, np.uint64)
            for tile in range(part, n_tiles, n_parts):
                j0 = tile * PAIR_TILE
                j1 = min(n_t, j0 + PAIR_TILE)
                captions = h_txt[j0 * n_bins : j1 * n_bins]
                for i in range(n_i):
                    tile_bins(img, i, txt_t, img_lab, txt_lab_t, j0, j1, bins, rel)
                    mine = h_img[part, i]
                    row = np.uint64(0)
                    for x in range(j1 - j0):
                        mine[bins[x]] += 1
                        captions[row + bins[x]] += 1
                        row += width
        return h_img, h_txt.reshape(n_t, n_bins)

    @njit(parallel=True, nogil=True)
    def query_histograms(q, c_t, q_lab, c_lab_t, n_bins):  # pragma: no cover - compiled
        """One direction: each query's histogram over every candidate (threads own queries)."""
        n_q, n_c = q.shape[0], c_t.shape[1]
        out = np.zeros((n_q, n_bins), np.int32)
        for i in prange(n_q):
            bins = np.empty(QUERY_TILE, np.uint64)
            rel = np.empty(QUERY_TILE, np.uint64)
            mine = out[i]
            for j0 in range(0, n_c, QUERY_TILE):
                j1 = min(n_c, j0 + QUERY_TILE)
                tile_bins(q, i, c_t, q_lab, c_lab_t, j0, j1, bins, rel)
                for x in range(j1 - j0):
                    mine[bins[x]] += 1
        return out

    return pair_histograms, query_histograms


def _top_k_kernel(numba: Any, popcount: Any) -> Any:
    import numpy as np

    njit, prange = numba.njit, numba.prange

    @njit(nogil=True)
    def keep_best(buf_d, buf_i, count, k, tmp_d, tmp_i, hist):
        """Stable counting sort of the first `count` buffered (distance, index) pairs; keeps the best k."""
        for d in range(hist.shape[0]):
            hist[d] = 0
        for x in range(count):
            hist[buf_d[x] + 1] += 1
        for d in range(1, hist.shape[0]):
            hist[d] += hist[d - 1]
        for x in range(count):  # buffered in index order, so ties stay ordered by index
            p = hist[buf_d[x]]
            hist[buf_d[x]] = p + 1
            tmp_d[p] = buf_d[x]
            tmp_i[p] = buf_i[x]
        kept = min(k, count)
        for x in range(kept):
            buf_d[x] = tmp_d[x]
            buf_i[x] = tmp_i[x]
        return kept

    @njit(parallel=True, nogil=True)
    def top_k(q, db_t, k, n_dist, n_parts):  # pragma: no cover - compiled
        """Exact k nearest codes per query, by distance then index. Distances come a tile at a time
        (word-major codes, vectorised popcount); a candidate is buffered only when it beats the
        k-th distance so far (one compare per pair, as in a heap); a full buffer is cut back to
        the best k by a counting sort over the bits + 1 distances."""
        n_q, n = q.shape[0], db_t.shape[1]
        out_d = np.empty((n_q, k), np.int32)
        out_i = np.empty((n_q, k), np.int64)
        per_part = (n_q + n_parts - 1) // n_parts
        cap = 4 * k + 64
        for part in prange(n_parts):
            dist = np.empty(QUERY_TILE, np.uint64)
            buf_d = np.empty(cap, np.int32)
            buf_i = np.empty(cap, np.int64)
            tmp_d = np.empty(cap, np.int32)
            tmp_i = np.empty(cap, np.int64)
            hist = np.empty(n_dist + 1, np.int64)
            for qi in range(part * per_part, min(n_q, (part + 1) * per_part)):
                count = 0
                bound = np.uint64(n_dist)  # accept any distance until k are buffered
                for j0 in range(0, n, QUERY_TILE):
                    j1 = min(n, j0 + QUERY_TILE)
                    m = j1 - j0
                    for x in range(m):
                        dist[x] = 0
                    for w in range(q.shape[1]):
                        qw, words = q[qi, w], db_t[w, j0:j1]
                        for x in range(m):
                            dist[x] += np.uint64(popcount(qw ^ words[x]))
                    for x in range(m):
                        if dist[x] < bound:
                            buf_d[count] = dist[x]
                            buf_i[count] = j0 + x
                            count += 1
                            if count == cap:
                                count = keep_best(buf_d, buf_i, count, k, tmp_d, tmp_i, hist)
                                bound = np.uint64(buf_d[k - 1])  # later items at this distance rank after the k-th
                count = keep_best(buf_d, buf_i, count, k, tmp_d, tmp_i, hist)
                for x in range(k):
                    out_d[qi, x] = buf_d[x]
                    out_i[qi, x] = buf_i[x]
        return out_d, out_i

    return top_k
