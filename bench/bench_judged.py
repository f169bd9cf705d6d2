"""Judged relevance on the COCO 5K id space: the full protocol with and without judged metrics.

Task: the 5,000 images x 25,000 captions of the COCO 5K test split as the eccv-caption package
ships them (COCO caption annotation ids, each caption's image from its original positives), random
d=256 embeddings, 80-class multi-hot labels; the full protocol both directions (R@1/5/10, MedR,
MeanR, mAP@10/100/N, PR11), then the same with the ECCV Caption, CxC and COCO judgments (R@1/5/10,
R-P, mAP@R, NDCG@10, MRR@10 for each, both directions). One process, same data, same threads:
the ratio is what judged metrics add (target: at most 1.30). Timings on a shared machine are
noisy: the ratio of the two, measured back to back and repeated, is the number to read.

Usage: .venv/bin/python bench/bench_judged.py [--dim 256] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import resources

import numpy as np
import torch


def coco_5k_space():
    """(image ids, caption ids, caption_to_image) of the package's 5K test split."""
    from fico_registry.data.eccv_caption import eccv_test_ids

    caption_ids = eccv_test_ids().astype(np.int64)
    c2image = json.loads((resources.files("eccv_caption") / "data" / "original_caption_to_image.json").read_text())
    image_of = np.array([int(c2image[str(c)][0]) for c in caption_ids], dtype=np.int64)
    image_ids, c2i = np.unique(image_of, return_inverse=True)
    return image_ids, caption_ids, c2i.astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from fico_registry import evaluate_embeddings
    from fico_registry.data.eccv_caption import eccv_caption_judgments

    image_ids, caption_ids, c2i = coco_5k_space()
    rng = np.random.default_rng(0)
    img = rng.standard_normal((len(image_ids), args.dim)).astype(np.float32)
    txt = (0.5 * img[c2i] + rng.standard_normal((len(caption_ids), args.dim))).astype(np.float32)
    freq = rng.dirichlet(np.full(80, 0.5)) * 3.0
    labels = (rng.random((len(image_ids), 80)) < np.clip(freq, 0.002, 0.6)).astype(np.float32)
    labels[labels.sum(1) == 0, rng.integers(0, 80)] = 1
    started = time.perf_counter()
    judgments = {which: eccv_caption_judgments(image_ids, caption_ids, which) for which in ("eccv", "cxc", "coco")}
    load_s = time.perf_counter() - started
    print(
        f"task: {len(image_ids)} images x {len(caption_ids)} captions, d={args.dim}, 80 classes; "
        f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs (shared machine: read the ratio)"
    )
    for name, js in judgments.items():
        print(
            f"  {name}: i2t {js.i2t.counts.sum()} pairs / {len(js.i2t.judged_queries)} queries, "
            f"t2i {js.t2i.counts.sum()} pairs / {len(js.t2i.judged_queries)} queries"
        )
    print(f"  loading the three judgment sets: {load_s:.2f} s (once per corpus, not timed below)")

    inside: list[float] = []

    def run(with_judgments: bool) -> float:
        t = time.perf_counter()
        report = evaluate_embeddings(
            img, txt, c2i, labels, device="cpu", judgments=judgments if with_judgments else None
        )
        if with_judgments:
            inside.append(report.settings["judged_seconds"])
        return time.perf_counter() - t

    run(False)  # warm up (allocator, threads)
    plain, judged = [], []
    for _ in range(args.repeat):  # interleaved, so load changes hit both alike
        plain.append(run(False))
        judged.append(run(True))
    p, j = min(plain), min(judged)
    print(f"plain protocol:                {p:7.2f} s (best of {args.repeat})")
    print(f"with ECCV + CxC + COCO judged: {j:7.2f} s")
    print(f"ratio judged / plain:          {j / p:7.3f}  (target <= 1.30)")
    print(
        f"judged pass's own time (both directions' threads together): {min(inside):.2f} s "
        f"= {min(inside) / p:.1%} of the plain wall time"
    )


if __name__ == "__main__":
    main()
