"""`fico evaluate-cascade FIRST RERANK`: screen with one model, re-rank each query's top k with another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fico_registry.cli.evaluate import (
    FEATURES_HELP,
    _evaluator_kwargs,
    _model_config,
    _parse_options,
    common_options,
    load_corpus,
)
from fico_registry.cli.options import corpus_source_options
from fico_registry.errors import OptionError


@click.command("evaluate-cascade")
@click.argument("first")
@click.argument("rerank")
@click.option(
    "--k", "ks", default="10,100,N", show_default=True, help="Re-rank depths: positive integers, N = every candidate."
)
@click.option(
    "--index",
    type=click.Choice(["flat", "hnsw", "binary-flat", "binary-ivf"]),
    help="Search FIRST's outputs with a FAISS index (default: the exact engine).",
)
@click.option(
    "--index-depth",
    type=int,
    help="Results per query an approximate index returns (default: the largest finite k or metric k).",
)
@click.option("--first-config", default="default", show_default=True, help="Config of FIRST (name or JSON file).")
@click.option("--first-checkpoint", help="Checkpoint of FIRST.")
@click.option("--rerank-config", default="default", show_default=True, help="Config of RERANK (name or JSON file).")
@click.option("--rerank-checkpoint", help="Checkpoint of RERANK.")
@click.option("--no-standalone", is_flag=True, help="Skip RERANK's own report (it scores every pair).")
@click.option(
    "--save-evidence",
    "evidence_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="New folder for the leaderboard evidence (FIRST's outputs, RERANK's scores of the re-ranked pairs); "
    "`fico submit --cascade-from DIR --k K` submits one k of it. Needs the exact first stage (no --index).",
)
@corpus_source_options
@click.option("--features", "feature_files", multiple=True, help=FEATURES_HELP)
@click.option("--batch-size", type=int, default=32, show_default=True)
@common_options
def evaluate_cascade_cmd(
    first: str, rerank: str, ks: str, index: str | None, index_depth: int | None, first_config: str,
    first_checkpoint: str | None, rerank_config: str, rerank_checkpoint: str | None, no_standalone: bool,
    evidence_dir: Path | None,
    dataset: str | None, split: str | None, root: Path | None, dataset_options: tuple[str, ...], corpus: Path | None,
    feature_files: tuple[str, ...], batch_size: int, **opts: Any,
) -> None:  # fmt: skip
    """Evaluate the cascade FIRST -> RERANK at each k: report, costs and (--plot) the accuracy-cost curve."""
    from fico_registry.data.attach import attach_feature_files, parse_feature_files
    from fico_registry.studies.cascade import evaluate_cascade, parse_ks
    from fico_registry.studies.cascade_plot import cascade_table, plot_cascade

    depths = parse_ks(ks)  # bad options fail before any data or model loads
    if index_depth is not None and index_depth < 1:
        raise OptionError("--index-depth must be a positive integer")
    if evidence_dir is not None and index is not None:
        raise OptionError(
            "--save-evidence needs the exact first stage: an index's search is not evidence (drop --index)"
        )
    if evidence_dir is not None and evidence_dir.exists() and any(evidence_dir.iterdir()):
        raise OptionError(f"{evidence_dir} is not empty; choose a new folder for --save-evidence")
    data = load_corpus(dataset, corpus, split, root, _parse_options(dataset_options))
    data = attach_feature_files(data, parse_feature_files(feature_files), data.split)
    doc = evaluate_cascade(
        first, rerank, data, depths, first_config=_model_config(first, first_config, ()),
        first_checkpoint=first_checkpoint, rerank_config=_model_config(rerank, rerank_config, ()),
        rerank_checkpoint=rerank_checkpoint, index=index, index_depth=index_depth, batch_size=batch_size,
        standalone=not no_standalone, keep_evidence=evidence_dir is not None, **_evaluator_kwargs(opts),
    )  # fmt: skip
    if evidence_dir is not None:
        from fico_registry.leaderboard.cascade_entry import save_cascade_run

        save_cascade_run(doc, data, evidence_dir)
        del doc["evidence"]  # numpy arrays: saved above, not JSON
        submit = f"fico submit --cascade-from {evidence_dir} --k K"
        click.echo(f"evidence: {evidence_dir} (submit one k with `{submit}`)", err=True)
    text = json.dumps(doc, indent=2)
    if opts["as_json"]:
        click.echo(text)
    else:
        from fico_registry.evaluator.report import make_console

        make_console().print(cascade_table(doc))
    if opts["output"]:
        Path(opts["output"]).parent.mkdir(parents=True, exist_ok=True)
        Path(opts["output"]).write_text(text + "\n")
        click.echo(f"report: {opts['output']}", err=True)
    if opts["plot"]:
        click.echo(f"accuracy-cost plot: {plot_cascade(doc, opts['plot'])}", err=True)
