"""Cost of a cascade at k = 10 / 100 / N as a ratio to the re-ranker alone, measured in one run.

One pair (default: reference-dual screening (exact cosine), scan re-ranking; tiny random
configs, since timing does not depend on the weights) on a synthetic corpus (default 100 images,
500 captions). For each k: the pairs the re-ranker scored and the wall seconds of its calls, both
directions, divided by those of the re-ranker scoring every pair through the same pair path (k = N),
and by the seconds of the stand-alone re-ranker (`fico evaluate RERANK`: the full score matrix in
blocks). Screen seconds (first-stage blocks + top-k) are printed next to them. Timings on a shared
machine are noisy: read the ratios, which are taken in one process on the same data.

--per-query also runs the cascade with the re-ranker's score() only (its score_pairs hidden: one
query's short list per call, the path cross-attention plugins without score_pairs take) and prints
its table, from the same process, so the two paths compare on the same data.

Usage: .venv/bin/python bench/bench_cascade.py [--images 100] [--first reference-dual] [--rerank scan] [--per-query]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--first", default="reference-dual")
    parser.add_argument("--rerank", default="scan")
    parser.add_argument("--config", default="tiny", help="config of both models")
    parser.add_argument("--index", default=None, help="FAISS index of the first stage (default: exact engine)")
    parser.add_argument("--json", action="store_true", help="print the whole cascade document too")
    parser.add_argument("--per-query", action="store_true", help="also time the re-ranker's score() path")
    args = parser.parse_args()

    import torch

    from fico_registry.data import synthetic
    from fico_registry.evaluator.evaluate import evaluate
    from fico_registry.models.loading import load_model
    from fico_registry.studies.cascade import evaluate_cascade

    torch.manual_seed(0)
    corpus = synthetic(n_images=args.images, root=tempfile.mkdtemp(prefix="bench-cascade-"))
    first = load_model(args.first, config=args.config, device="cpu")
    rerank = load_model(args.rerank, config=args.config, device="cpu")
    began = time.perf_counter()
    alone = evaluate(rerank, corpus, device="cpu", cache=False)
    alone_total = time.perf_counter() - began
    alone_query_s = (alone.costs or {}).get("query_time", {}).get("seconds")
    print(f"{args.first} -> {args.rerank} ({args.config}), {corpus.n_images} images x {corpus.n_captions} captions")
    print(f"re-ranker alone (fico evaluate): {alone_total:.2f} s total, {alone_query_s} s in its score calls")
    paths = [("", rerank)]
    if args.per_query:
        paths.append(("score() per query", _score_only(rerank)))
    for label, model in paths:
        doc = evaluate_cascade(first, model, corpus, ks=(10, 100, "N"), device="cpu", index=args.index,
                               standalone=False)  # fmt: skip
        if label:
            print(f"-- {label}")
        _table(doc, alone_query_s)
    if args.json:
        print(json.dumps(doc, indent=2))


def _score_only(model):
    """The model with its encoder's score_pairs hidden."""
    from fico_registry.models.loading import Model

    class ScoreOnly:
        def __init__(self, inner) -> None:
            self.encode_images, self.encode_texts, self.score = inner.encode_images, inner.encode_texts, inner.score

    return Model(model.spec, ScoreOnly(model.encoder), config_name=model.config_name, config=model.config,
                 checkpoint=None, device="cpu")  # fmt: skip


def _table(doc, alone_query_s) -> None:
    full = doc["by_k"]["N"]["costs"]
    full_pairs = sum(full["rerank_pairs"].values())
    print(f"{'k':>4} {'pairs':>8} {'pairs/N':>8} {'rerank s':>9} {'s / k=N':>8} {'s / alone':>9} {'screen s':>9} "
          f"{'calls':>6}")  # fmt: skip
    for key, entry in doc["by_k"].items():
        costs = entry["costs"]
        pairs = sum(costs["rerank_pairs"].values())
        seconds = costs["seconds"]["rerank"]
        vs_alone = seconds / alone_query_s if alone_query_s else float("nan")
        vs_full = seconds / full["seconds"]["rerank"]
        calls = sum(costs["rerank_calls"].values())
        print(f"{key:>4} {pairs:>8} {pairs / full_pairs:>8.3f} {seconds:>9.3f} {vs_full:>8.3f} "
              f"{vs_alone:>9.3f} {costs['seconds']['screen']:>9.4f} {calls:>6}")  # fmt: skip


if __name__ == "__main__":
    main()
