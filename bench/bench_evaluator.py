"""The standard evaluator vs fico-itr 1.0.0 and vs the floor, on one COCO-sized task, one process.

Task (the FiCo-ITR COCO 5K test shape): 5,000 images x 25,000 captions, d=256, 80 classes
multi-hot labels; full protocol both directions: R@1/5/10, MedR, MeanR, mAP@10/100/N (+ PR11,
which fico-itr does not compute at all).

- baseline: fico-itr 1.0.0 (compute_similarity + instance_retrieval + category_retrieval for
  k = 10, 100, N), the FiCo-ITR reference implementation;
- floor: one GEMM for the score matrix plus the full sorts mAP@N needs in both directions
  (torch, same threads): no evaluator can do the exact protocol with less work than this.

Usage: .venv/bin/python bench/bench_evaluator.py [--images 5000] [--cpi 5] [--dim 256] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch
from _tasks import make_task


def timed(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run_ours(img, txt, c2i, labels, device: str = "cpu"):
    from fico_registry import evaluate_embeddings

    return evaluate_embeddings(img, txt, c2i, labels, measure="cosine", device=device, progress=False)


def run_floor(img, txt, device: str = "cpu"):
    """GEMM + numpy's (vectorised) float32 sorts of every row, both directions in two threads.

    On CUDA: the GEMM and torch's row sorts of both directions on the device, synchronised.
    """
    from concurrent.futures import ThreadPoolExecutor

    if device != "cpu":
        a = torch.nn.functional.normalize(torch.from_numpy(img).to(device), dim=1)
        b = torch.nn.functional.normalize(torch.from_numpy(txt).to(device), dim=1)
        scores = a @ b.T
        torch.sort(scores, dim=1)
        torch.sort(scores.T.contiguous(), dim=1)
        torch.cuda.synchronize()
        return
    a = torch.nn.functional.normalize(torch.from_numpy(img), dim=1)
    b = torch.nn.functional.normalize(torch.from_numpy(txt), dim=1)
    scores = (a @ b.T).numpy()
    with ThreadPoolExecutor(2) as pool:
        jobs = [
            pool.submit(np.sort, scores, axis=1),
            pool.submit(lambda: np.sort(np.ascontiguousarray(scores.T), axis=1)),
        ]
        for job in jobs:
            job.result()


def run_fico_itr(img, txt, c2i, labels):
    import fico_itr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = fico_itr.compute_similarity(img, txt, "cosine")
        i2t, t2i = fico_itr.instance_retrieval(sim, captions_per_image=c2i.tolist())
        maps = {
            k: fico_itr.category_retrieval(sim, labels, k=k, captions_per_image=c2i.tolist()) for k in (10, 100, None)
        }
    return i2t, t2i, maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--cpi", type=int, default=5)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="best of N for ours and the floor (fico-itr runs once)")
    parser.add_argument("--skip-fico-itr", action="store_true", help="only ours vs the floor")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: ours and the floor run there")
    args = parser.parse_args()

    img, txt, c2i, labels = make_task(args.images, args.cpi, args.dim)
    print(
        f"task: {args.images} images x {len(c2i)} captions, d={args.dim}, {labels.shape[1]} classes; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )
    print(f"device: {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    run_ours(img[:200], txt[:1000], c2i[:1000], labels[:200], args.device)  # warm-up: imports, first allocations

    t_floor, _ = timed(lambda: run_floor(img, txt, args.device), args.repeat)
    t_ours, report = timed(lambda: run_ours(img, txt, c2i, labels, args.device), args.repeat)
    rows = [("floor: GEMM + full row sorts", t_floor), ("fico-registry evaluate_embeddings", t_ours)]
    if not args.skip_fico_itr:
        t_fico, (i2t, t2i, maps) = timed(lambda: run_fico_itr(img, txt, c2i, labels), 1)
        rows.append(("fico-itr 1.0.0", t_fico))
        ours = report.to_dict()
        diff = max(
            abs(ours["instance"]["i2t"]["R@1"] * 100 - i2t["R@1"]),
            abs(ours["instance"]["t2i"]["R@1"] * 100 - t2i["R@1"]),
            abs(ours["category"]["i2t"]["mAP@N"] - maps[None][0]),
            abs(ours["category"]["t2i"]["mAP@100"] - maps[100][1]),
        )
        print(f"agreement with fico-itr (max abs diff over R@1, mAP@100, mAP@N): {diff:.2e}")

    print(f"\n{'':36s} {'seconds':>9s} {'x floor':>8s}")
    for name, t in rows:
        print(f"{name:36s} {t:9.2f} {t / t_floor:8.2f}")
    if not args.skip_fico_itr:
        print(f"\nspeed-up over fico-itr 1.0.0: {t_fico / t_ours:.1f}x  (ours also computes PR11)")
    print(f"ours vs floor: {t_ours / t_floor:.2f}x the floor")


if __name__ == "__main__":
    main()
