"""`fico submit` and `fico leaderboard build|check` (routed lazily from fico_registry.cli.main)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from fico_registry.cli.options import apply_options
from fico_registry.errors import OptionError
from fico_registry.leaderboard import standard
from fico_registry.results.record import EMBEDDING_MEASURES


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
@click.option(
    "--corpus",
    "corpus_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="The saved Corpus the board uses (Corpus.save folder).",
)
@click.option(
    "--model-name", help="The name shown on the board (default with --from-embeddings / --model: the model's name)."
)
@click.option(
    "--from-embeddings",
    "saved_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder written by `fico evaluate ... --save-embeddings` (its outputs and report).",
)
@click.option(
    "--model",
    "registered_model",
    help="A registered model to encode the corpus with now (instead of --images/--texts).",
)
@click.option(
    "--cascade-from",
    "cascade_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder written by `fico evaluate-cascade ... --save-evidence` (with --k: which depth to submit).",
)
@click.option("--k", "cascade_k", help="With --cascade-from: the entry's re-rank depth (one of the run's ks, or N).")
@click.option("--checkpoint", help="With --model: checkpoint name from the card, a local file/folder, or a hub id.")
@click.option(
    "--config", "model_config", default="default", show_default=True, help="With --model: named config of the card."
)
@click.option("--batch-size", type=int, default=32, show_default=True, help="With --model: encoder batch size.")
@click.option(
    "--image-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="With --model: where the corpus images are now, if they moved.",
)
@click.option(
    "--images",
    help="(n_images, d) embeddings or codes: .npy/.npz/.safetensors ('file:key' picks one array of several).",
)
@click.option("--texts", help="(n_texts, d) embeddings or codes.")
@click.option(
    "--measure",
    type=click.Choice(list(EMBEDDING_MEASURES)),
    help="Similarity of --images/--texts  [default: cosine]",
)
@click.option("--bits", type=int, help="Code length of packed uint8 hash codes.")
@click.option("--i2t", help="(n_images, n_texts) scores, higher = more similar (query-time attention models).")
@click.option("--t2i", help="(n_texts, n_images) scores when the directions differ (fusion re-rank).")
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="New folder for the submission.",
)
@click.option(
    "--report",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="`fico evaluate -o` report of this model on this corpus: carries provenance and costs over.",
)
@click.option(
    "--family",
    type=click.Choice(["vlp", "fg", "cg"]),
    help="Model family (default: from the model card if the name is registered).",
)
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
    corpus_path: Path,
    model_name: str | None,
    saved_dir: Path | None,
    registered_model: str | None,
    checkpoint: str | None,
    model_config: str,
    batch_size: int,
    image_root: Path | None,
    images: str | None,
    texts: str | None,
    measure: str | None,
    bits: int | None,
    i2t: str | None,
    t2i: str | None,
    out_dir: Path,
    report: Path | None,
    submitter: str | None,
    evidence_format: str,
    device: str,
    cascade_dir: Path | None,
    cascade_k: str | None,
    **model_fields: Any,
) -> None:
    """Build a leaderboard submission: evaluate the evidence, write submission.json + evidence files.

    The evidence comes from files (--images/--texts or --i2t/--t2i), from a folder written by
    `fico evaluate --save-embeddings` (--from-embeddings), from encoding the corpus now (--model), or
    for a cascade from a folder written by `fico evaluate-cascade --save-evidence` (--cascade-from DIR --k K)."""
    from fico_registry.data import Corpus

    _check_evidence_source(
        {
            "--images/--texts/--i2t/--t2i": bool(images or texts or i2t or t2i),
            "--from-embeddings": saved_dir is not None,
            "--model": registered_model is not None,
            "--cascade-from": cascade_dir is not None,
        }
    )
    if registered_model is None and (checkpoint or image_root or model_config != "default"):
        raise OptionError("--checkpoint, --config and --image-root go with --model")
    if (cascade_dir is None) != (cascade_k is None):
        raise OptionError(
            "--cascade-from DIR and --k K go together: K is the re-rank depth of the entry (one of the run's ks)"
        )
    corpus = Corpus.load(corpus_path, image_root=image_root)
    entry = _Entry(
        out_dir,
        model_name,
        submitter,
        evidence_format,
        device,
        {k: v for k, v in model_fields.items() if v is not None},
    )
    if cascade_dir is not None:
        result = _submit_cascade(corpus, cascade_dir, cascade_k, entry, measure, bits)
    elif registered_model is not None:
        encoder = _Encoder(registered_model, model_config, checkpoint, batch_size)
        result = _submit_encoded(corpus, encoder, entry, report, measure, bits)
    elif saved_dir is not None:
        result = _submit_saved(corpus, saved_dir, entry, report, measure, bits)
    else:
        arrays = {
            "images": images,
            "texts": texts,
            "i2t": i2t,
            "t2i": t2i,
            "measure": measure or "cosine",
            "bits": bits,
        }
        result = _submit_arrays(corpus, arrays, entry, report)
    _echo_written(result, corpus, out_dir)
    click.echo(f"check it: fico leaderboard check {out_dir} --corpus {corpus_path}")


@dataclass(frozen=True)
class _Entry:
    """Where a submission goes and what describes it, whichever way its evidence comes."""

    out_dir: Path
    model_name: str | None
    submitter: str | None
    evidence_format: str
    device: str
    model: dict[str, Any]  # card fields given on the command line (--family, --url, ...), unset ones left out


@dataclass(frozen=True)
class _Encoder:
    """--model and the options that go with it: the registered model that encodes the corpus now."""

    model: str
    config: str
    checkpoint: str | None
    batch_size: int


def _check_evidence_source(given: dict[str, bool]) -> None:
    """Exactly one way of giving the evidence (`given`: option -> whether it was used)."""
    if not any(given.values()):
        raise OptionError(
            "give embeddings (--images and --texts), similarity scores (--i2t, optionally --t2i), a folder written by "
            "`fico evaluate --save-embeddings` (--from-embeddings DIR) or a registered model to encode the corpus "
            "now (--model)"
        )
    if sum(given.values()) > 1:
        chosen = " and ".join(k for k, v in given.items() if v)
        raise OptionError(f"give the evidence one way: {', '.join(given)} (got {chosen})")


def _submit_arrays(corpus: Any, arrays: dict[str, Any], entry: _Entry, report: Path | None) -> Any:
    """make_submission() of evidence arrays (or their files) under the entry's name."""
    from fico_registry.leaderboard.submit import make_submission

    if not entry.model_name:
        raise OptionError("give --model-name: the name shown on the board")
    return make_submission(
        corpus,
        entry.model_name,
        entry.out_dir,
        **arrays,
        model=entry.model,
        report=report,
        submitter=entry.submitter,
        evidence_format=entry.evidence_format,
        device=entry.device,
    )


def _refuse_measure_and_bits(measure: str | None, bits: int | None, source: str) -> None:
    """--measure and --bits describe bare arrays; a saved run or a model card already says them."""
    if measure or bits:
        raise OptionError(f"--measure and --bits come from {source}")


def _submit_saved(
    corpus: Any, folder: Path, entry: _Entry, report: Path | None, measure: str | None, bits: int | None
) -> Any:
    """A --save-embeddings folder: its arrays, and its model name and report unless given."""
    _refuse_measure_and_bits(measure, bits, "the saved model card with --from-embeddings / --model")
    arrays, saved_name, saved_report = _saved_arguments(folder, corpus)
    named = replace(entry, model_name=entry.model_name or saved_name)
    return _submit_arrays(corpus, arrays, named, report or saved_report)


def _submit_encoded(
    corpus: Any, encoder: _Encoder, entry: _Entry, report: Path | None, measure: str | None, bits: int | None
) -> Any:
    """Encode the corpus with a registered model now, then submit its outputs like a --from-embeddings folder."""
    import tempfile

    # refused before encoding, which can take hours on a real corpus
    _refuse_measure_and_bits(measure, bits, "the saved model card with --from-embeddings / --model")
    with tempfile.TemporaryDirectory(prefix="fico-submit-") as scratch:
        folder = _encode_now(encoder, corpus, entry.device, Path(scratch) / "outputs")
        return _submit_saved(corpus, folder, entry, report, None, None)


def _submit_cascade(corpus: Any, folder: Path, k: Any, entry: _Entry, measure: str | None, bits: int | None) -> Any:
    from fico_registry.leaderboard.cascade_entry import make_cascade_submission, read_cascade_run

    _refuse_measure_and_bits(measure, bits, "the saved cascade run with --cascade-from")
    run = read_cascade_run(folder, k, corpus)
    return make_cascade_submission(
        corpus,
        entry.out_dir,
        run,
        model_name=entry.model_name,
        model=entry.model,
        submitter=entry.submitter,
        evidence_format=entry.evidence_format,
        device="cpu" if entry.device == "auto" else entry.device,
    )


def _echo_written(result: Any, corpus: Any, out_dir: Path) -> None:
    inst = result.metrics.instance
    recalls = [f"{d} R@{k} {100 * (inst[d][f'R@{k}'] or 0):.2f}" for d in ("i2t", "t2i") for k in standard.RECALL_KS]
    click.echo(f"{result.model.name} on {corpus.name}/{corpus.split}: " + ", ".join(recalls))
    n_files = len(result.evidence.files()) if result.evidence else 0
    click.echo(f"submission written to {out_dir} (submission.json + {n_files} evidence files)")


def _saved_arguments(folder: Path, corpus: Any) -> tuple[dict[str, Any], str, Path | None]:
    """make_submission() arrays, the model name and the report of a --save-embeddings folder."""
    from fico_registry.results.embedding_export import read_saved_embeddings

    saved = read_saved_embeddings(folder)
    saved.check_corpus(corpus)
    return saved.submit_arguments(), str(saved.manifest["model"]), saved.report


def _encode_now(encoder: _Encoder, corpus: Any, device: str, folder: Path) -> Path:
    """Evaluate the model on `corpus` (through the embedding cache) and save its outputs into `folder`."""
    from fico_registry.evaluator.evaluate import evaluate
    from fico_registry.models.loading import load_model
    from fico_registry.plugin_api.registry import get_model_spec
    from fico_registry.results.embedding_export import check_exportable, save_embeddings

    check_exportable(get_model_spec(encoder.model))
    loaded = load_model(
        encoder.model,
        config=encoder.config,
        checkpoint=encoder.checkpoint,
        device=None if device == "auto" else device,
    )
    outputs: dict[str, Any] = {}
    report = evaluate(loaded, corpus, device=device, batch_size=encoder.batch_size, keep_outputs=outputs, progress=None)
    return save_embeddings(folder, loaded, corpus, outputs, report)


@click.group("leaderboard")
def leaderboard() -> None:
    """Verify submissions and build the static leaderboard site."""


def _verification_options(func: Any) -> Any:
    options = [
        click.option(
            "--corpus",
            "corpus_paths",
            multiple=True,
            required=True,
            type=click.Path(exists=True, path_type=Path),
            help="A saved Corpus; repeat for several boards.",
        ),
        click.option(
            "--tolerance",
            type=float,
            default=standard.FRACTION_TOLERANCE,
            show_default=True,
            help="Largest accepted difference of a claimed fraction.",
        ),
        click.option("--max-file-size", default="2GB", show_default=True, help="Largest accepted evidence file."),
        click.option("--device", default="cpu", show_default=True, help="Device the metrics are recomputed on."),
    ]
    return apply_options(func, options)


@leaderboard.command("build")
@click.argument("submissions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_verification_options
@click.option(
    "-o",
    "--output",
    "site_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the site (replaced if an earlier build made it).",
)
@click.option(
    "--strict", is_flag=True, help="Exit with status 1 if any submission is rejected (for CI on pull requests)."
)
@click.option("--json", "as_json", is_flag=True, help="Print accepted and rejected submissions as JSON.")
@click.option("--no-plots", is_flag=True, help="Skip the plots (quicker, e.g. to check a pull request).")
def build_cmd(
    submissions_dir: Path,
    corpus_paths: tuple[Path, ...],
    tolerance: float,
    max_file_size: str,
    device: str,
    site_dir: Path,
    strict: bool,
    as_json: bool,
    no_plots: bool,
) -> None:
    """Verify every submission in SUBMISSIONS_DIR, recompute its metrics and write the site."""
    from fico_registry.leaderboard.build import build_leaderboard

    result = build_leaderboard(
        submissions_dir,
        _load_corpora(corpus_paths),
        site_dir,
        tolerance=tolerance,
        max_file_bytes=parse_size(max_file_size),
        device=device,
        plots=not no_plots,
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "accepted": [v.submission for v in result.accepted],
                    "rejected": [v.to_rejection() for v in result.rejected],
                    "site": str(site_dir / "index.html"),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
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
def check_cmd(
    submission: Path, corpus_paths: tuple[Path, ...], tolerance: float, max_file_size: str, device: str
) -> None:
    """Verify one submission folder the way the board will (exit status 1 if it would be rejected)."""
    from fico_registry.leaderboard.verify import verify_submission

    corpora = {c.content_hash: c for c in _load_corpora(corpus_paths)}
    verdict = verify_submission(
        submission, corpora, tolerance=tolerance, max_file_bytes=parse_size(max_file_size), device=device
    )
    if verdict.accepted:
        assert verdict.result is not None
        click.echo(f"accepted: {verdict.result.model.name} (metrics recomputed and within tolerance)")
        return
    click.echo(f"rejected {verdict.submission}:", err=True)
    for reason in verdict.reasons:
        click.echo(f"  - {reason}", err=True)
    raise SystemExit(1)
