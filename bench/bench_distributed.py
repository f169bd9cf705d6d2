"""Sharded (torchrun, 2 CPU ranks, gloo) vs single-process evaluation time, on one mid-size task.

Task: 2,000 images x 10,000 captions, d=256, 80-class multi-hot labels, two protocols:
  - full:  R@1/5/10, MedR, MeanR, mAP@10/100/N + PR11 -> both directions sharded by queries;
  - top-k: R@1/5/10, MedR, MeanR, mAP@10/100         -> both directions sharded by candidates.
The single process runs in a subprocess with torch's default threads (its two directions in two
threads); the 2-rank job runs under torchrun (which sets OMP_NUM_THREADS=1 per rank). Times are
those of the evaluate_embeddings call (best of --repeat), measured inside the processes: process
start and imports are reported apart. The reports are checked identical.

Memory: the inputs are .npy files opened as memmaps (as the embedding cache hands them over), so
a process reads only the rows it touches. Printed per process: the bytes of prepared embeddings it
held (top-k: its shards only; full: every row) and its peak RSS (VmHWM, includes the ~0.4 GB of
torch itself). `--images 20000 --protocols top-k` makes the shard effect visible.

NOTE: this machine has 2 cores, so the 2 ranks share the same 2 cores the single process
already uses (two directions in two threads): the ratio shows the overhead of sharding, not a
speed-up. On N GPUs or N machines each rank has its own device and the work divides by N.

Usage: .venv/bin/python bench/bench_distributed.py [--images 2000] [--cpi 5] [--dim 256] [--repeat 2]
                                                    [--protocols full top-k]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _tasks import make_task

PROTOCOLS = {"full": (10, 100, None), "top-k": (10, 100)}


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_protocols(folder: Path, repeat: int, protocols: list[str]) -> dict[str, dict]:
    """Time evaluate_embeddings for each protocol (in this process: one rank or the single process)."""
    from fico_registry.evaluator import sharded as distributed
    from fico_registry.evaluator.evaluate import evaluate_embeddings

    img, txt = np.load(folder / "images.npy", mmap_mode="r"), np.load(folder / "texts.npy", mmap_mode="r")
    c2i, labels = np.load(folder / "c2i.npy"), np.load(folder / "labels.npy")
    out = {}
    for name in protocols:
        map_ks = PROTOCOLS[name]
        best, report = float("inf"), None
        for _ in range(repeat):
            if distributed.active():
                import torch.distributed as dist

                dist.barrier()  # start the clock together
            began = time.perf_counter()
            report = evaluate_embeddings(img, txt, c2i, labels, map_ks=map_ks, device="cpu", progress=False)
            best = min(best, time.perf_counter() - began)
        data = report.to_dict()
        out[name] = {
            "seconds": best,
            "instance": data["instance"],
            "category": data["category"],
            "costs": data.get("costs"),
        }
    out["_peak_rss"] = peak_rss_bytes()
    return out


def worker(folder: Path, repeat: int, protocols: list[str]) -> None:
    """One process: a torchrun rank (joins the group through the evaluator) or the single process."""
    from fico_registry.evaluator import sharded as distributed

    sharded = distributed.init_if_launched("cpu")
    results = run_protocols(folder, repeat, protocols)
    peaks = [results["_peak_rss"]]
    if sharded:
        import torch.distributed as dist

        peaks = distributed.Sharding(dist).all_gather_object(results["_peak_rss"])
    results["_peak_rss"] = peaks
    if distributed.is_main_process():
        (folder / ("sharded.json" if sharded else "single.json")).write_text(json.dumps(results))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--cpi", type=int, default=5)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.repeat, args.protocols)
        return

    folder = Path(tempfile.mkdtemp(prefix="fico-bench-dist-"))
    img, txt, c2i, labels = make_task(args.images, args.cpi, args.dim)
    for name, array in (("images", img), ("texts", txt), ("c2i", c2i), ("labels", labels)):
        np.save(folder / f"{name}.npy", array)
    import torch

    print(
        f"task: {len(img)} images x {len(txt)} captions, d={args.dim}, {labels.shape[1]} classes; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["FICO_NO_PROGRESS"] = "1"
    del img, txt
    worker_args = [
        str(Path(__file__).resolve()),
        "--worker",
        str(folder),
        "--repeat",
        str(args.repeat),
        "--protocols",
        *args.protocols,
    ]
    alone = subprocess.run([sys.executable, *worker_args], env=env, capture_output=True, text=True)
    if alone.returncode != 0:
        sys.exit(f"single process failed:\n{alone.stderr[-4000:]}")
    single = json.loads((folder / "single.json").read_text())

    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(args.nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        *worker_args,
    ]
    launched = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    launch_total = time.perf_counter() - launched
    if done.returncode != 0:
        sys.exit(f"torchrun failed:\n{done.stderr[-4000:]}")
    sharded = json.loads((folder / "sharded.json").read_text())

    whole = (args.images + args.images * args.cpi) * args.dim * 4
    print(
        f"{'protocol':<8} {'1 process':>10} {f'{args.nproc} ranks':>10} {'ratio':>7}  identical  sharding    "
        "embeddings held per rank (1 process: all)   per-rank ranking seconds"
    )
    for name in args.protocols:
        one, many = single[name], sharded[name]
        same = one["instance"] == many["instance"] and one["category"] == many["category"]
        dist = many["costs"]["distributed"]
        per_rank = ", ".join(f"r{e['rank']}: {e['i2t']:.2f}+{e['t2i']:.2f}" for e in dist["per_rank"])
        held = ", ".join(
            "all" if e["resident"] is None else f"{e['resident']['bytes'] / 2**20:.1f}" for e in dist["per_rank"]
        )
        modes = "/".join(sorted(set(dist["sharding"].values())))
        print(
            f"{name:<8} {one['seconds']:>9.2f}s {many['seconds']:>9.2f}s {many['seconds'] / one['seconds']:>6.2f}x  "
            f"{same!s:<9}  {modes:<10}  "
            f"MiB {held} (all: {whole / 2**20:.1f})  {per_rank}"
        )
    print(
        f"peak RSS per process (MiB, whole job): 1 process {single['_peak_rss'][0] / 2**20:.0f}; "
        f"{args.nproc} ranks " + ", ".join(f"{b / 2**20:.0f}" for b in sharded["_peak_rss"])
    )
    print(
        f"(torchrun job wall time incl. start, imports, {args.repeat} x {len(PROTOCOLS)} evaluations: "
        f"{launch_total:.1f}s)"
    )
    print(
        f"note: {os.cpu_count()} cores here, shared by the {args.nproc} ranks exactly as the single process's two "
        "direction threads share them: ratio ~1 means sharding costs little; it divides the work only when "
        "each rank has its own GPU or machine."
    )


if __name__ == "__main__":
    main()
