"""`fico bench`: what models cost at scale (`costs`) and how search indexes trade recall for time (`search`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from fico_registry.errors import OptionError


@click.group("bench")
def bench() -> None:
    """Cost and search benchmarks (docs/costs.md explains every number)."""


def _write_json(doc: dict[str, Any], path: str | None) -> None:
    if not path:
        return
    from fico_registry.evaluator.report import _clean

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(_clean(doc), indent=2, allow_nan=False) + "\n")
    tmp.replace(target)


def _base_corpus(
    dataset: str, split: str, scales: list[Any], base_images: int | None, data_root: str | None
) -> tuple[Any, dict[str, Any]]:
    """The corpus every scale duplicates: the synthetic set sized to the smallest scale, or a registered
    dataset's split."""
    if dataset == "synthetic":
        from fico_registry.data import synthetic

        smallest = scales[0]
        n_images = base_images or smallest.n_images
        per_image, rest = divmod(smallest.n_texts, smallest.n_images)
        if rest or per_image < 1:
            raise OptionError(
                f"scale {smallest.label}: captions must be a whole multiple of images for the synthetic corpus"
            )
        corpus = synthetic(n_images=n_images, captions_per_image=per_image, split=split, root=data_root)
        return corpus, {"generator": "fico_registry.data.synthetic", "captions_per_image": per_image}
    from fico_registry.data import load_dataset

    return load_dataset(dataset, split=split, root=data_root), {}


def _checkpoints(items: tuple[str, ...], models: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            if len(models) != 1:
                raise OptionError("with several models, give --checkpoint MODEL=PATH")
            name, path = models[0], item
        out[name] = path
    return out


@bench.command("costs")
@click.argument("models", nargs=-1, required=True)
@click.option(
    "--dataset", default="synthetic", show_default=True, help="'synthetic' or a registered dataset (`fico datasets`)."
)
@click.option("--split", default="test", show_default=True)
@click.option(
    "--data-root", type=click.Path(), help="Dataset folder (synthetic: where to build it; default $FICO_HOME)."
)
@click.option("--base-images", type=int, help="Synthetic base corpus size (default: the smallest scale's images).")
@click.option("--config", default="default", show_default=True, help="Model config for every model (e.g. tiny).")
@click.option(
    "--checkpoint", "checkpoints", multiple=True, help="MODEL=PATH (or PATH with one model); default random init."
)
@click.option(
    "--scales", default="1000x5000,10000x50000", show_default=True, help="IMAGESxTEXTS,... (1kx5k, 1Mx5M also work)."
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--time-budget", type=float, help="Seconds allowed per run (one model at one scale); default unlimited.")
@click.option(
    "--memory-budget",
    help="Per run, a size with a unit (500MB, 8GB; a bare number is bytes); default 3/4 of the RAM available at start.",
)
@click.option(
    "--rerank-k", default=128, show_default=True, help="Top-k re-ranked by fusion models (the paper fixes 128)."
)
@click.option("--topk", default=10, show_default=True, help="Top-k kept per query by the search step.")
@click.option("--no-accuracy", is_flag=True, help="Skip the accuracy evaluation on the base corpus.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results here.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), help="Write the figures to this folder.")
@click.option("--plot-format", type=click.Choice(["png", "svg"]), default="png", show_default=True)
def costs_cmd(
    models: tuple[str, ...],
    dataset: str,
    split: str,
    data_root: str | None,
    base_images: int | None,
    config: str,
    checkpoints: tuple[str, ...],
    scales: str,
    device: str,
    batch_size: int,
    time_budget: float | None,
    memory_budget: str | None,
    rerank_k: int,
    topk: int,
    no_accuracy: bool,
    json_path: str | None,
    plots_dir: str | None,
    plot_format: str,
) -> None:
    """Encode time, storage and query-time cost of MODELS at each scale, within a time/memory budget.

    Each scale IMAGESxTEXTS is the base corpus duplicated (the FiCo-ITR method) and encoded in
    full. A scale predicted to exceed the budget is not started: it is reported as DNF with the
    prediction and the fitted cost model.
    """
    from fico_registry.evaluator.report import make_console
    from fico_registry.studies.costs import Budget, CostSettings, parse_memory_budget, parse_scales, run_costs
    from fico_registry.studies.costs.budget import default_memory_budget
    from fico_registry.studies.costs.table import cost_tables

    if batch_size < 1 or rerank_k < 1 or topk < 1:
        raise OptionError("--batch-size, --rerank-k and --topk must be positive")
    console = make_console()
    scale_list = parse_scales(scales)
    memory = parse_memory_budget(memory_budget) if memory_budget else default_memory_budget()
    settings = CostSettings(
        scales=scale_list,
        device=device,
        batch_size=batch_size,
        budget=Budget(time_budget, memory),
        rerank_k=rerank_k,
        topk=topk,
        accuracy=not no_accuracy,
    )
    base, info = _base_corpus(dataset, split, scale_list, base_images, data_root)
    console.print(f"base corpus: {base} (hash {base.short_hash}); scales {', '.join(s.label for s in scale_list)}")
    doc = run_costs(
        list(models),
        base,
        settings,
        config=config,
        checkpoints=_checkpoints(checkpoints, models),
        console=console,
        dataset=info,
    )
    for table in cost_tables(doc):
        console.print(table)
    _write_json(doc, json_path)
    if json_path:
        console.print(f"wrote {json_path}")
    if plots_dir:
        from fico_registry.studies.costs.plots import plot_cost_figures

        paths = plot_cost_figures(doc, plots_dir, plot_format)
        console.print("plots: " + ", ".join(str(p) for p in paths))
    if any(m["status"] != "ok" for m in doc["models"]):
        raise SystemExit(1)


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    from fico_registry.studies.costs.scales import Scale

    return [(s.n_images, s.n_texts) for s in (Scale.parse(part) for part in text.split(",") if part.strip())]


def _parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise OptionError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise OptionError(f"{what} must be positive integers, got {text!r}")
    return values


@bench.command("search")
@click.option("--sizes", default="10000x50000", show_default=True, help="IMAGESxTEXTS,... of synthetic vectors.")
@click.option("--dim", default=2048, show_default=True, help="Synthetic vector width.")
@click.option("--bits", default=64, show_default=True, help="Bits of the binary codes (multiple of 8).")
@click.option(
    "--embeddings",
    nargs=2,
    type=click.Path(exists=True, dir_okay=False),
    help="IMAGES.npy TEXTS.npy instead of synthetic vectors.",
)
@click.option(
    "--caption-to-image",
    type=click.Path(exists=True, dir_okay=False),
    help="With --embeddings: .npy image index of each caption (enables task recall).",
)
@click.option(
    "--direction",
    type=click.Choice(["t2i", "i2t"]),
    default="t2i",
    show_default=True,
    help="t2i: captions query the images.",
)
@click.option("--ks", default="1,100,1000", show_default=True, help="Recall@k cut-offs (also the k of each search).")
@click.option("--max-queries", default=10000, show_default=True, help="Query sample size (0: every query).")
@click.option(
    "--binarise",
    type=click.Choice(["pca", "random"]),
    default="pca",
    show_default=True,
    help="How float vectors become codes.",
)
@click.option("--hnsw-m", default=32, show_default=True)
@click.option("--ef-construction", default=40, show_default=True)
@click.option(
    "--ef-search",
    default=",".join(map(str, (16, 32, 64, 128, 256, 512))),
    show_default=True,
    help="efSearch values to sweep.",
)
@click.option("--nlist", type=int, help="Binary IVF lists (default sqrt(database size)).")
@click.option("--nprobe", default="1,2,4,8,16,32,64", show_default=True, help="nprobe values to sweep.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results here.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), help="Write R@k-vs-time figures here.")
@click.option("--plot-format", type=click.Choice(["png", "svg"]), default="png", show_default=True)
def search_cmd(
    sizes: str,
    dim: int,
    bits: int,
    embeddings: tuple[str, str] | None,
    caption_to_image: str | None,
    direction: str,
    ks: str,
    max_queries: int,
    binarise: str,
    hnsw_m: int,
    ef_construction: int,
    ef_search: str,
    nlist: int | None,
    nprobe: str,
    seed: int,
    json_path: str | None,
    plots_dir: str | None,
    plot_format: str,
) -> None:
    """FAISS flat / HNSW / binary flat / binary IVF and the built-in engine: build time, search time, recall, bytes."""
    import numpy as np

    from fico_registry.evaluator.report import make_console
    from fico_registry.runtime.provenance import hardware_fingerprint
    from fico_registry.studies.costs.table import search_tables
    from fico_registry.studies.search import (
        StudySettings,
        load_embeddings,
        query_sample,
        run_search_study,
        synthetic_study,
    )

    console = make_console()
    settings = StudySettings(
        ks=_parse_ints(ks, "--ks"),
        bits=bits,
        binarise=binarise,
        direction=direction,
        max_queries=max_queries or None,
        hnsw_m=hnsw_m,
        ef_construction=ef_construction,
        ef_search=_parse_ints(ef_search, "--ef-search"),
        nlist=nlist,
        nprobe=_parse_ints(nprobe, "--nprobe"),
        seed=seed,
    )
    doc: dict[str, Any] = {
        "fico_bench": "search",
        "format_version": 1,
        "hardware": hardware_fingerprint(),
        "settings": settings.__dict__,
        "results": [],
    }
    if embeddings:
        images, texts = load_embeddings(embeddings[0]), load_embeddings(embeddings[1])
        c2i = None
        if caption_to_image:
            c2i = np.load(caption_to_image, allow_pickle=False).astype(np.int64)
            if c2i.shape != (len(texts),) or c2i.min() < 0 or c2i.max() >= len(images):
                raise OptionError(
                    f"{caption_to_image}: need one image index in [0, {len(images) - 1}] per caption ({len(texts)})"
                )
        n_queries = len(texts) if direction == "t2i" else len(images)
        rows = query_sample(n_queries, settings.max_queries, seed)
        if direction == "t2i":
            texts = texts[rows]
        else:
            images = images[rows]
        console.print(
            f"embeddings: {len(images)} images, {len(texts)} captions (queries sampled: {len(rows)} of {n_queries})"
        )
        result = run_search_study(images, texts, settings, caption_to_image=c2i, query_rows=rows)
        result["data"] = {
            "kind": "embeddings",
            "images": os.fspath(embeddings[0]),
            "texts": os.fspath(embeddings[1]),
            "n_queries_total": n_queries,
        }
        doc["results"].append(result)
    else:
        for n_images, n_texts in _parse_sizes(sizes):
            console.print(f"synthetic vectors: {n_images} images x {n_texts} captions, d={dim}")
            doc["results"].append(synthetic_study(n_images, n_texts, dim, settings))
    for table in search_tables(doc):
        console.print(table)
    for result in doc["results"]:
        hnsw = result["indexes"]["hnsw-flat"]
        state = "[green]met[/green]" if hnsw["target"]["met"] else "[red]NOT met[/red]"
        console.print(f"HNSW target ({hnsw['target']['rule']}): {state} with {hnsw['params']}")
    _write_json(doc, json_path)
    if json_path:
        console.print(f"wrote {json_path}")
    if plots_dir:
        from fico_registry.studies.costs.plots import plot_search_tradeoff

        for result in doc["results"]:
            name = f"search_{result['n_database']}db_{result['n_queries']}q_{result['direction']}.{plot_format}"
            console.print(f"plot: {plot_search_tradeoff(result, Path(plots_dir) / name)}")
