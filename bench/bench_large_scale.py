"""Bounded memory at scale: R@K + mAP@100, both directions, on 100,000 images x 500,000 captions.

The full score matrix alone would be 200 GB (float32); the engine streams query blocks against
all candidates under `memory_budget` and keeps only per-query statistics. Prints wall time and
peak RSS of this process (embeddings included: 600 MB at d=256).

Usage: .venv/bin/python bench/bench_large_scale.py [--images 100000] [--cpi 5] [--budget 1GB]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import torch


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--cpi", type=int, default=5)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument(
        "--budget", default="512MB", help="memory_budget for the score blocks (split between the two directions)"
    )
    args = parser.parse_args()

    from fico_registry import evaluate_embeddings

    rng = np.random.default_rng(0)
    img = rng.standard_normal((args.images, args.dim), dtype=np.float32)
    c2i = np.repeat(np.arange(args.images, dtype=np.int64), args.cpi)
    txt = rng.standard_normal((len(c2i), args.dim), dtype=np.float32)
    for start in range(0, len(c2i), 50_000):  # in chunks: no full-size temporaries
        stop = start + 50_000
        txt[start:stop] += 0.5 * img[c2i[start:stop]]
    labels = (rng.random((args.images, args.classes)) < 0.04).astype(np.uint8)
    print(
        f"{args.images} images x {len(c2i)} captions, d={args.dim}; full matrix would be "
        f"{args.images * len(c2i) * 4 / 1e9:.0f} GB; budget {args.budget}; {os.cpu_count()} cores, "
        f"torch {torch.__version__}"
    )
    print(f"peak RSS after building the data: {peak_rss_gib():.2f} GiB")
    start = time.perf_counter()
    report = evaluate_embeddings(
        img, txt, c2i, labels, map_ks=(100,), device="cpu", memory_budget=args.budget, progress=True
    )
    seconds = time.perf_counter() - start
    d = report.to_dict()
    print(
        f"i2t R@1 {d['instance']['i2t']['R@1']:.4f}  t2i R@1 {d['instance']['t2i']['R@1']:.4f}  "
        f"mAP@100 i2t {d['category']['i2t']['mAP@100']:.4f} t2i {d['category']['t2i']['mAP@100']:.4f}"
    )
    rss = peak_rss_gib()
    bar = 2.5e9 / 2**30  # the 2.5 GB, in GiB
    print(
        f"wall {seconds:.0f} s; peak RSS {rss:.2f} GiB "
        f"({'under' if rss < bar else 'OVER'} the 2.5 GB = {bar:.2f} GiB bar)"
    )


if __name__ == "__main__":
    main()
