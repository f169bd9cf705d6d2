"""`fico submit` and `fico leaderboard build|check` (routed lazily from fico_registry.cli.main)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fico_registry.errors import OptionError
from fico_registry.leaderboard import standard


def parse_size(text: str) -> int:
    """'2GB', '500MB', '64KiB', '1000' -> bytes."""
    value = text.strip().upper().replace("IB", "B")
    scale = 1
    for suffix, factor in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)):
        if value.endswith(suffix):
            value, scale = value[: -len(suffix)], factor
            break
    try:
        size = int(float(value) * scale)
    except ValueError:
        raise OptionError(f"{text!r} is not a size like '2GB' or '500MB'") from None
    if size <= 0:
        raise OptionError(f"size must be positive, got {text!r}")
    return size


def _load_corpora(paths: tuple[Path, ...]) -> list[Any]:
    from fico_registry.data import Corpus

    return [Corpus.load(p) for p in paths]


@click.command("submit")
@click.option("--corpus", "corpus_path", required=True, type=click.Path(exists=True, path_type=Path), help="The saved Corpus the board uses (Corpus.save folder).")
@click.option("--model-name", required=True, help="The name shown on the board.")
@click.option("--images", help="(n_images, d) embeddings or codes: .npy/.npz/.safetensors ('file:key' picks one array of several).")
@click.option("--texts", help="(n_texts, d) embeddings or codes.")
@click.option("--measure", type=click.Choice(["cosine", "inner_product", "euclidean", "hamming", "maxsim"]), default="cosine", show_default=True)
@click.option("--bits", type=int, help="Code length of packed uint8 hash codes.")
@click.option("--i2t", help="(n_images, n_texts) scores, higher = more similar (query-time attention models).")
@click.option("--t2i", help="(n_texts, n_images) scores when the directions differ (fusion re-rank).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="New folder for the submission.")
@click.option("--report", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="`fico evaluate -o` report of this model on this corpus: carries provenance and costs over.")
@click.option("--family", type=click.Choice(["vlp", "fg", "cg"]), help="Model family (default: from the model card if the name is registered).")
@click.option("--description", help="One or two sentences shown under the name.")
@click.option("--url", help="http(s) link to the model, code or paper.")
@click.option("--paper", help="Citation, e.g. 'Lee et al., ECCV 2018'.")
@click.option("--submitter", help="Who submits (name or handle).")
@click.option("--plugin", "distribution", help="Plugin distribution that produced the outputs (pip name).")
@click.option("--plugin-version", "version", help="Its version.")
@click.option("--checkpoint-sha256", help="sha256 of the weights used.")
@click.option("--evidence-format", type=click.Choice(["npy", "safetensors"]), default="npy", show_default=True)
@click.option("--device", default="auto", show_default=True, help="Where the claimed metrics are computed.")
def submit_cmd(
    corpus_path: Path, model_name: str, images: str | None, texts: str | None, measure: str, bits: int | None,
    i2t: str | None, t2i: str | None, out_dir: Path, report: Path | None, submitter: str | None,
    evidence_format: str, device: str, **model_fields: Any,
) -> None:
    """Build a leaderboard submission: evaluate the evidence, write submission.json + evidence files."""
    from fico_registry.data import Corpus
    from fico_registry.leaderboard.submit import make_submission

    corpus = Corpus.load(corpus_path)
    result = make_submission(
        corpus, model_name, out_dir, images=images, texts=texts, measure=measure, bits=bits, i2t=i2t, t2i=t2i,
        model={k: v for k, v in model_fields.items() if v is not None}, report=report, submitter=submitter,
        evidence_format=evidence_format, device=device,
    )
    inst = result.metrics.instance
    click.echo(
        f"{result.model.name} on {corpus.name}/{corpus.split}: "
        + ", ".join(f"{d} R@{k} {100 * (inst[d][f'R@{k}'] or 0):.2f}" for d in ("i2t", "t2i") for k in standard.RECALL_KS)
    )
    click.echo(f"submission written to {out_dir} (submission.json + {len(result.evidence.files()) if result.evidence else 0} evidence files)")
    click.echo(f"check it: fico leaderboard check {out_dir} --corpus {corpus_path}")


@click.group("leaderboard")
def leaderboard() -> None:
    """Verify submissions and build the static leaderboard site."""


def _verification_options(func: Any) -> Any:
    options = [
        click.option("--corpus", "corpus_paths", multiple=True, required=True, type=click.Path(exists=True, path_type=Path), help="A saved Corpus; repeat for several boards."),
        click.option("--tolerance", type=float, default=standard.FRACTION_TOLERANCE, show_default=True, help="Largest accepted difference of a claimed fraction."),
        click.option("--max-file-size", default="2GB", show_default=True, help="Largest accepted evidence file."),
        click.option("--device", default="cpu", show_default=True, help="Device the metrics are recomputed on."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@leaderboard.command("build")
@click.argument("submissions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_verification_options
@click.option("-o", "--output", "site_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the site (replaced if an earlier build made it).")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any submission is rejected (for CI on pull requests).")
@click.option("--json", "as_json", is_flag=True, help="Print accepted and rejected submissions as JSON.")
@click.option("--no-plots", is_flag=True, help="Skip the plots (quicker, e.g. to check a pull request).")
def build_cmd(
    submissions_dir: Path, corpus_paths: tuple[Path, ...], tolerance: float, max_file_size: str, device: str,
    site_dir: Path, strict: bool, as_json: bool, no_plots: bool,
) -> None:
    """Verify every submission in SUBMISSIONS_DIR, recompute its metrics and write the site."""
    from fico_registry.leaderboard.build import build_leaderboard

    result = build_leaderboard(
        submissions_dir, _load_corpora(corpus_paths), site_dir, tolerance=tolerance, max_file_bytes=parse_size(max_file_size), device=device,
        plots=not no_plots,
    )
    if as_json:
        click.echo(json.dumps({
            "accepted": [v.submission for v in result.accepted],
            "rejected": [v.to_rejection() for v in result.rejected],
            "site": str(site_dir / "index.html"),
        }, indent=2, ensure_ascii=False))
    else:
        click.echo(f"{len(result.accepted)} accepted, {len(result.rejected)} rejected")
        for verdict in result.rejected:
            click.echo(f"  rejected {verdict.submission}: {'; '.join(verdict.reasons)}")
        click.echo(f"site: {site_dir / 'index.html'}")
    if strict and result.rejected:
        raise SystemExit(1)


@leaderboard.command("check")
@click.argument("submission", type=click.Path(exists=True, path_type=Path))
@_verification_options
def check_cmd(submission: Path, corpus_paths: tuple[Path, ...], tolerance: float, max_file_size: str, device: str) -> None:
    """Verify one submission folder the way the board will (exit status 1 if it would be rejected)."""
    from fico_registry.leaderboard.verify import verify_submission

    corpora = {c.content_hash: c for c in _load_corpora(corpus_paths)}
    verdict = verify_submission(submission, corpora, tolerance=tolerance, max_file_bytes=parse_size(max_file_size), device=device)
    if verdict.accepted:
        assert verdict.result is not None
        click.echo(f"accepted: {verdict.result.model.name} (metrics recomputed and within tolerance)")
        return
    click.echo(f"rejected {verdict.submission}:", err=True)
    for reason in verdict.reasons:
        click.echo(f"  - {reason}", err=True)
    raise SystemExit(1)
