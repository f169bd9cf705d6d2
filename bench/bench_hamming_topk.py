"""Exact Hamming top-k on 64-bit codes: the engine's popcount path vs faiss IndexBinaryFlat.

Same packed codes, same k, one process. Both are exact, so the k-th distances must agree (the
item ids may differ inside ties). Ours: fico_registry.evaluator.hamming.hamming_topk (numba kernel when
installed: a threshold from the distance counts; else faiss, else numpy popcount + torch.topk).
faiss: IndexBinaryFlat.search (its own popcount and heaps). bench/bench_hamming.py compares
three shapes with each side at its best thread count.

Usage: .venv/bin/python bench/bench_hamming_topk.py [--queries 5000] [--database 500000] [--k 100]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def ours_topk(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from fico_registry.evaluator.hamming import hamming_topk

    return hamming_topk(queries, database, k)


def faiss_topk(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexBinaryFlat(64)
    index.add(database)
    return index.search(queries, k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--database", type=int, default=500_000)
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # clustered codes (like a trained hash model's), so distances have realistic ties
    centres = rng.integers(0, 256, size=(256, 8), dtype=np.uint8)
    flips = lambda n: np.packbits(rng.random((n, 64)) < 0.12, axis=1)  # noqa: E731
    database = centres[rng.integers(0, 256, args.database)] ^ flips(args.database)
    queries = centres[rng.integers(0, 256, args.queries)] ^ flips(args.queries)
    import faiss

    print(
        f"{args.queries} queries x {args.database} codes (64-bit), k={args.k}; {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), faiss {faiss.__version__} "
        f"({faiss.omp_get_max_threads()} threads)"
    )
    try:  # the same thread count as faiss
        import numba

        numba.set_num_threads(faiss.omp_get_max_threads())
    except ImportError:
        pass
    ours_topk(queries[:64], database[:10000], args.k)  # warm-up (numba compiles here)
    start = time.perf_counter()
    d_ours, _ = ours_topk(queries, database, args.k)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    d_faiss, _ = faiss_topk(queries, database, args.k)
    t_faiss = time.perf_counter() - start
    same = np.array_equal(np.sort(d_ours, axis=1), np.sort(d_faiss, axis=1))
    print(f"top-{args.k} distances identical: {same}")
    print(f"{'faiss IndexBinaryFlat':28s} {t_faiss:8.2f} s  1.00")
    print(f"{'fico-registry engine':28s} {t_ours:8.2f} s  {t_ours / t_faiss:.2f}x faiss")


if __name__ == "__main__":
    main()
