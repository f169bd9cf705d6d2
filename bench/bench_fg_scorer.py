"""Query-time cross-attention cost of SCAN and IMRAM: the full score matrix of a region-feature task.

Task (the FiCo-ITR Flickr30K 1K test shape): 1,000 images x 5,000 captions, 36 x 2048 bottom-up
region features per image, captions of ~12 words (10..14, plus <start>/<end>). Each model is built
with its DEFAULT (published-size) architecture and random weights: SCAN t2i LSE (1024-d, bi-GRU,
vocabulary of Flickr30K's 8,481 rows), IMRAM Image-IMRAM with one step (tune_f30k.sh). Encoding
is timed separately; the scoring goes through the evaluator's own path
(fico_registry.evaluator.query_time.cross_attention_matrix: 128-image x 1024-caption blocks fed to
model.score), which is what `fico evaluate` runs. Printed per model: encode seconds, scoring
seconds, pairs/s, bytes of the features kept for query time, and peak memory (process RSS on
CPU; torch's peak allocation on CUDA).

Usage:
    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_fg_scorer.py                 # 1000 x 5000, cpu (+cuda)
    .venv/bin/python bench/bench_fg_scorer.py --images 100 --captions 500       # smaller
    .venv/bin/python bench/bench_fg_scorer.py --models scan:f30k-i2t imram:coco  # other configs
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import warnings

import numpy as np
import torch

VOCAB_ROWS = 8481  # Flickr30K's SCAN / IMRAM vocabulary


def make_task(n_images: int, n_captions: int, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    regions = rng.gamma(0.5, 1.0, size=(n_images, 36, 2048)).astype(np.float32)  # non-negative, like bottom-up features
    words = [f"w{i}" for i in range(VOCAB_ROWS - 4)]
    lengths = rng.integers(10, 15, size=n_captions)
    captions = [" ".join(rng.choice(words, size=n)) for n in lengths]
    return regions, captions, words


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def encode(model, regions: np.ndarray, captions: list[str], device: str, batch: int = 128):
    def cat(parts):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    images = cat(
        [
            {k: v.cpu() for k, v in model.encode_images(regions[s : s + batch]).items()}
            for s in range(0, len(regions), batch)
        ]
    )
    texts = cat(
        [
            {k: v.cpu() for k, v in model.encode_texts(captions[s : s + batch]).items()}
            for s in range(0, len(captions), batch)
        ]
    )
    return images, texts


def run_one(
    name: str, config: str, regions: np.ndarray, captions: list[str], words: list[str], device: str, dtype: str
) -> dict:
    from fico_registry import load_model
    from fico_registry.evaluator.query_time import ScorerCost, cross_attention_matrix
    from fico_registry.plugin_api.registry import get_model_spec

    cfg = {**get_model_spec(name).configs[config], "vocab_words": words, "score_dtype": dtype}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(name, config=cfg, device=device)
    began = time.perf_counter()
    with torch.inference_mode():
        images, texts = encode(model, regions, captions, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    encode_s = time.perf_counter() - began
    kept = sum(v.numel() * v.element_size() for v in (*images.values(), *texts.values()))
    cost = ScorerCost()
    began = time.perf_counter()
    matrix = cross_attention_matrix(model, images, texts, device=device, cost=cost, progress=False)
    score_s = time.perf_counter() - began
    assert matrix.shape == (len(regions), len(captions)) and np.isfinite(matrix).all()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else peak_rss_mb()
    o = model.encoder.options
    what = f"{o['model_mode']} x{o['iteration_step']}" if "model_mode" in o else f"{o['cross_attn']} {o['agg_func']}"
    return {
        "model": f"{name}:{config}",
        "what": what,
        "device": device,
        "encode_s": encode_s,
        "score_s": score_s,
        "model_score_s": cost.seconds,
        "pairs_per_s": cost.pairs / score_s,
        "calls": cost.calls,
        "kept_mb": kept / 2**20,
        "peak_mb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--captions", type=int, default=5000)
    parser.add_argument("--models", nargs="+", default=["scan:default", "imram:default"], help="name:config pairs")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="scoring precision (the originals: SCAN float64, IMRAM float32)",
    )
    args = parser.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(
        f"task: {args.images} images x {args.captions} captions, regions 36x2048, captions 10-14 words; "
        f"scoring {args.dtype}; torch {torch.__version__}, {torch.get_num_threads()} threads "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
        f"{platform.processor() or platform.machine()}"
    )
    regions, captions, words = make_task(args.images, args.captions)
    header = (
        f"{'model':<16}{'scores':<18}{'device':<7}{'encode s':>9}{'score s':>10}{'pairs/s':>12}{'kept MB':>9}"
        f"{'peak MB':>9}"
    )
    print(header)
    for device in devices:
        for item in args.models:
            name, _, config = item.partition(":")
            r = run_one(name, config or "default", regions, captions, words, device, args.dtype)
            print(
                f"{r['model']:<16}{r['what']:<18}{r['device']:<7}{r['encode_s']:>9.1f}{r['score_s']:>10.1f}"
                f"{r['pairs_per_s']:>12,.0f}{r['kept_mb']:>9.0f}{r['peak_mb']:>9.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
