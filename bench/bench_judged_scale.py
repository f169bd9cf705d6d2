"""Judged metrics at scale: 100,000 x 500,000 64-bit codes, 20 graded judgments per query in both
directions, R@K + judged metrics (top-k protocol), 512MB budget: wall time and peak RSS (bound 2.5 GB).

Usage: .venv/bin/python bench/bench_judged_scale.py   (about 6 minutes on 2 idle cores)
"""

import resource
import time

import numpy as np

from fico_registry import evaluate_embeddings
from fico_registry.data.judgments import Judgments, JudgmentSet

n_img, cpi, bits, per = 100_000, 5, 64, 20
rng = np.random.default_rng(0)
img = rng.integers(0, 2, size=(n_img, bits), dtype=np.uint8).astype(bool)
c2i = np.repeat(np.arange(n_img), cpi)
txt = img[c2i] ^ (rng.random((len(c2i), bits)) < 0.15)
img_p, txt_p = np.packbits(img, axis=1), np.packbits(txt, axis=1)
del img, txt


def random_judgments(nq, nc):
    q = np.repeat(np.arange(nq), per)
    c = rng.integers(0, nc, size=nq * per)
    pairs = np.unique(q * nc + c)  # drop the rare repeats
    return Judgments.from_pairs(pairs // nc, pairs % nc, nq, nc, rng.integers(1, 4, size=len(pairs)).astype(float))


js = JudgmentSet("random20", random_judgments(n_img, len(c2i)), random_judgments(len(c2i), n_img))
print("judged pairs:", len(js.i2t.indices), len(js.t2i.indices), flush=True)
t0 = time.perf_counter()
report = evaluate_embeddings(
    img_p,
    txt_p,
    c2i,
    measure="hamming",
    bits=bits,
    map_ks=(),
    ties="optimistic",
    judgments={"random20": js},
    memory_budget="512MB",
    progress=False,
)
wall = time.perf_counter() - t0
out = report.to_dict()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
print(f"wall {wall:.1f} s; peak RSS {peak:.2f} GiB (bound 2.5 GB = 2.33 GiB)")
print(
    "judged i2t",
    {k: v for k, v in out["judged"]["random20"]["i2t"].items() if k in ("R@1", "NDCG@10", "judged_queries")},
)
print("judged seconds", out["settings"].get("judged_seconds"))
