"""`fico evaluate`, `fico evaluate-embeddings`, `fico evaluate-similarity`.

Array files are read by fico_registry.data.arrays (never unpickled). Under torchrun every rank
computes its shard and only rank 0 prints and writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fico_registry.cli import judged_options as judged_cli
from fico_registry.cli.judged_options import judged_options
from fico_registry.cli.options import apply_options, corpus_source_options, root_option, split_option
from fico_registry.errors import OptionError
from fico_registry.plugin_api.cards import MEASURES


def _ks(text: str, *, allow_all: bool) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if allow_all and part.upper() in ("N", "ALL", "NONE"):
            out.append(None)
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise OptionError(
                f"bad k {part!r} in {text!r}: use positive integers" + (" or N (whole ranking)" if allow_all else "")
            )
    return tuple(out)


def _size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """--memory-budget checked before any file is read (fico_registry.runtime.sizes: one rule for every command)."""
    from fico_registry.runtime.sizes import parse_size

    if value is None:
        return None
    try:
        return parse_size(value, what="--memory-budget")
    except OptionError as exc:
        raise click.BadParameter(str(exc)) from None


def common_options(func: Any) -> Any:
    """The evaluator's options, shared by the three commands."""
    options = [
        click.option("--recall-ks", default="1,5,10", show_default=True, help="Ks of instance Recall@K."),
        click.option(
            "--map-ks", default="10,100,N", show_default=True, help="Ks of category mAP@K; N = whole ranking."
        ),
        click.option(
            "--ties",
            type=click.Choice(["expected", "optimistic", "pessimistic"]),
            default="expected",
            show_default=True,
        ),
        click.option("--map-variant", type=click.Choice(["fico", "apk", "dcmh"]), default="fico", show_default=True),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."),
        click.option(
            "--memory-budget",
            default=None,
            callback=_size_option,
            help="Peak working memory for scores: a size with a unit, e.g. 512MB or 2GB (a bare number is bytes; "
            "default: a safe share of free memory).",
        ),
        click.option(
            "-o",
            "--out",
            "--output",
            "output",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write the report JSON here.",
        ),
        click.option(
            "--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write the 11-point PR curves (PNG or SVG)."
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table."),
        click.option("--progress/--no-progress", default=None, help="Progress bars (default: when on a terminal)."),
    ]
    return apply_options(func, options)


def _evaluator_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    return {
        "recall_ks": _ks(opts["recall_ks"], allow_all=False),
        "map_ks": _ks(opts["map_ks"], allow_all=True),
        "ties": opts["ties"],
        "map_variant": opts["map_variant"],
        "device": opts["device"],
        "memory_budget": opts["memory_budget"],
        "progress": opts["progress"],
    }


def _emit(report: Any, opts: dict[str, Any]) -> None:
    from fico_registry.runtime.distributed import is_main_process

    if not is_main_process():
        return
    if opts["as_json"]:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        report.print()
    if opts["output"]:
        report.to_json(opts["output"])
        click.echo(f"report: {opts['output']}", err=True)
    if opts["plot"]:
        if report.category:
            click.echo(f"PR plot: {report.plot_pr(opts['plot'])}", err=True)
        else:
            click.echo("no PR plot: the report has no category metrics (pass --labels)", err=True)


def _caption_map(caption_map: str | None, captions_per_image: int | None, n_images: int, n_texts: int) -> Any:
    import numpy as np

    from fico_registry.data.arrays import read_array

    if caption_map and captions_per_image:
        raise OptionError("give --caption-map or --captions-per-image, not both")
    if caption_map:
        return read_array(caption_map, mmap=False)
    if captions_per_image:
        if n_texts != n_images * captions_per_image:
            raise OptionError(
                f"--captions-per-image {captions_per_image} needs n_texts = {n_images} x {captions_per_image}, got "
                f"{n_texts}; "
                "pass --caption-map for uneven captions"
            )
        return np.repeat(np.arange(n_images), captions_per_image)
    raise OptionError(
        "say which image each caption belongs to: --caption-map FILE (int array) or --captions-per-image N"
    )


@click.command("evaluate-embeddings")
@click.option(
    "--images",
    required=True,
    help="(n_images, d) embeddings or codes: .npy/.npz/.pt/.safetensors, 'file:key' for one array of many.",
)
@click.option("--texts", required=True, help="(n_texts, d) embeddings or codes.")
@click.option("--caption-map", help="(n_texts,) int array: the image index of each caption.")
@click.option(
    "--captions-per-image",
    type=int,
    help="Instead of --caption-map: captions are grouped, N per image, in image order.",
)
@click.option("--labels", help="(n_images, n_classes) multi-hot labels: enables category mAP and PR11.")
@click.option(
    "--measure",
    type=click.Choice(list(MEASURES)),
    default="cosine",
    show_default=True,
)
@click.option("--bits", type=int, help="Code length of packed uint8 codes (default: 8 x bytes).")
@judged_options(names=False, ids=True)
@common_options
def evaluate_embeddings_cmd(
    images: str,
    texts: str,
    caption_map: str | None,
    captions_per_image: int | None,
    labels: str | None,
    measure: str,
    bits: int | None,
    **opts: Any,
) -> None:
    """Evaluate precomputed embeddings or hash codes with the full FiCo-ITR protocol."""
    from fico_registry.data.arrays import read_array
    from fico_registry.evaluator.evaluate import evaluate_embeddings

    img, txt = read_array(images), read_array(texts)
    c2i = _caption_map(caption_map, captions_per_image, len(img), len(txt))
    lab = read_array(labels, mmap=False) if labels else None
    judged = judged_cli.for_arrays(opts, len(img), len(txt))
    report = evaluate_embeddings(img, txt, c2i, lab, measure=measure, bits=bits, **_evaluator_kwargs(opts), **judged)
    report.settings["inputs"] = {"images": images, "texts": texts}
    _emit(report, opts)


@click.command("evaluate-similarity")
@click.option("--i2t", required=True, help="(n_images, n_texts) scores, higher = more similar.")
@click.option(
    "--t2i", help="(n_texts, n_images) scores when the two directions differ (fusion re-rank); default i2t transposed."
)
@click.option("--caption-map", help="(n_texts,) int array: the image index of each caption.")
@click.option("--captions-per-image", type=int, help="Instead of --caption-map: N captions per image, in image order.")
@click.option("--labels", help="(n_images, n_classes) multi-hot labels.")
@judged_options(names=False, ids=True)
@common_options
def evaluate_similarity_cmd(
    i2t: str, t2i: str | None, caption_map: str | None, captions_per_image: int | None, labels: str | None, **opts: Any
) -> None:
    """Evaluate precomputed similarity matrices."""
    from fico_registry.data.arrays import read_array
    from fico_registry.evaluator.evaluate import evaluate_similarity

    i2t_mat = read_array(i2t)
    if i2t_mat.ndim != 2:
        raise OptionError(f"--i2t must be a 2-D (n_images, n_texts) matrix, got shape {i2t_mat.shape}")
    t2i_mat = read_array(t2i) if t2i else None
    c2i = _caption_map(caption_map, captions_per_image, i2t_mat.shape[0], i2t_mat.shape[1])
    lab = read_array(labels, mmap=False) if labels else None
    judged = judged_cli.for_arrays(opts, i2t_mat.shape[0], i2t_mat.shape[1])
    report = evaluate_similarity(i2t_mat, c2i, t2i=t2i_mat, labels=lab, **_evaluator_kwargs(opts), **judged)
    report.settings["inputs"] = {"i2t": i2t, "t2i": t2i}
    _emit(report, opts)


def _parse_options(pairs: tuple[str, ...], flag: str = "--dataset-option") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise OptionError(f"{flag} {pair!r}: use key=value")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _model_config(model: str, config: str, overrides: tuple[str, ...]) -> str | dict[str, Any]:
    """A config name, or a dict: a JSON file's contents or a named config with --set overrides."""
    from fico_registry.plugin_api.registry import get_model_spec

    if config.endswith(".json") and Path(config).is_file():
        try:
            base = json.loads(Path(config).read_text())
        except json.JSONDecodeError as exc:
            raise OptionError(f"--config {config}: not valid JSON ({exc})") from None
        if not isinstance(base, dict):
            raise OptionError(f"--config {config}: must hold a JSON object")
    elif not overrides:
        return config
    else:
        spec = get_model_spec(model)
        if config not in spec.configs:
            raise OptionError(f"{spec.name} has no config {config!r}; it has: {', '.join(spec.configs)}")
        base = dict(spec.configs[config])
    base.update(_parse_options(overrides, flag="--set"))
    return base


IMAGE_ROOT_HELP = "Where the images of the saved --corpus are now (when they moved since it was saved)."
FEATURES_HELP = (
    "[image:|text:]NAME=PATH: read input NAME from this feature file instead of running its pipeline; "
    "{split} in PATH is replaced by the split (repeatable)."
)


def load_corpus(
    dataset: str | None,
    corpus: Path | None,
    split: str | None,
    root: Path | None,
    options: dict[str, Any],
    image_root: Path | None = None,
) -> Any:
    from fico_registry.data import Corpus, load_dataset

    if corpus is not None:
        if dataset is not None:
            raise OptionError("give --dataset or --corpus, not both")
        return Corpus.load(corpus, image_root=image_root)
    if image_root is not None:
        raise OptionError("--image-root relocates the images of a saved --corpus; with --dataset pass --root")
    for key in ("root", "split"):
        if key in options:
            raise OptionError(f"pass {key} as --{key}, not as --dataset-option")
    return load_dataset(dataset or "synthetic", split=split, root=root, **options)


@click.command("evaluate")
@click.argument("model")
@corpus_source_options
@click.option("--image-root", type=click.Path(exists=True, file_okay=False, path_type=Path), help=IMAGE_ROOT_HELP)
@click.option(
    "--config",
    default="default",
    show_default=True,
    help="Named config of the model card (`fico info MODEL`), or a JSON file.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    help="KEY=VALUE over the config (VALUE parsed as JSON when it can be), e.g. --set vocab_size=8000.",
)
@click.option("--checkpoint", help="Checkpoint name from the card, a local file/folder, or a hub id.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--rerank-k", type=int, help="Fusion re-rank depth (default: the card's).")
@click.option(
    "--outside-topk",
    type=click.Choice(["keep", "exclude"]),
    default="keep",
    show_default=True,
    help="Re-rank models: below the top-k keep the first-stage order, or exclude (mAP@N n/a).",
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the embedding cache.")
@click.option("--features", "feature_files", multiple=True, help=FEATURES_HELP)
@click.option(
    "--save-embeddings",
    "save_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "New folder for the encoded corpus (embeddings, codes or the i2t matrix, .npy) + report: "
        "`fico submit --from-embeddings` reads it."
    ),
)
@judged_options(names=True, ids=False)
@common_options
def evaluate_cmd(
    model: str,
    dataset: str | None,
    split: str | None,
    root: Path | None,
    dataset_options: tuple[str, ...],
    corpus: Path | None,
    image_root: Path | None,
    config: str,
    overrides: tuple[str, ...],
    checkpoint: str | None,
    batch_size: int,
    rerank_k: int | None,
    outside_topk: str,
    no_cache: bool,
    feature_files: tuple[str, ...],
    save_dir: Path | None,
    **opts: Any,
) -> None:
    """Evaluate a registered MODEL end to end on a dataset: encode, score, report."""
    from fico_registry.data.attach import attach_feature_files, parse_feature_files
    from fico_registry.evaluator.evaluate import evaluate
    from fico_registry.models.loading import load_model
    from fico_registry.runtime.distributed import init_if_launched, is_main_process

    files = parse_feature_files(feature_files)
    if save_dir is not None:  # refuse before any work: a full folder, or outputs the board cannot take
        from fico_registry.plugin_api.registry import get_model_spec
        from fico_registry.results.embedding_export import check_exportable, check_new_folder

        check_new_folder(save_dir)
        check_exportable(get_model_spec(model))
    data = load_corpus(dataset, corpus, split, root, _parse_options(dataset_options), image_root)
    data = attach_feature_files(data, files, data.split)
    data, judged = judged_cli.for_corpus(data, opts, root)
    device = opts["device"]
    init_if_launched(device)  # under torchrun: join the group first, so each rank takes its own GPU
    loaded = load_model(
        model,
        config=_model_config(model, config, overrides),
        checkpoint=checkpoint,
        device=None if device == "auto" else device,
    )
    kwargs = _evaluator_kwargs(opts)
    kwargs.pop("device")
    outputs: dict[str, Any] | None = {} if save_dir is not None else None
    report = evaluate(
        loaded,
        data,
        device=device,
        batch_size=batch_size,
        cache=not no_cache,
        rerank_k=rerank_k,
        outside_topk=outside_topk,
        keep_outputs=outputs,
        **kwargs,
        **judged,
    )
    _emit(report, opts)
    if outputs is not None and save_dir is not None and is_main_process():  # outputs exist iff save_dir does
        from fico_registry.results.embedding_export import save_embeddings

        save_embeddings(save_dir, loaded, data, outputs, report)
        click.echo(
            f"outputs saved to {save_dir}; submit them: fico submit --from-embeddings {save_dir} --corpus CORPUS -o "
            "DIR",
            err=True,
        )


@click.group("corpus")
def corpus_group() -> None:
    """Save a dataset split as a Corpus folder (the ground truth the leaderboard matches by hash)."""


@corpus_group.command("save")
@click.argument("dataset")
@split_option
@root_option
@click.option("--dataset-option", "dataset_options", multiple=True, help="key=value passed to the dataset loader.")
@click.option(
    "-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write."
)
@click.option(
    "--judgments",
    multiple=True,
    help="Judgments saved with the corpus (a board then shows judged columns): " + judged_cli.JUDGMENTS_HELP,
)
@click.option(
    "--captions-json",
    type=click.Path(dir_okay=False, path_type=Path),
    help="COCO's captions_val2014.json for --judgments eccv/cxc/coco.",
)
def corpus_save_cmd(
    dataset: str,
    split: str | None,
    root: Path | None,
    dataset_options: tuple[str, ...],
    output: Path,
    judgments: tuple[str, ...],
    captions_json: Path | None,
) -> None:
    """Write DATASET's split as a Corpus folder (JSON + arrays, no pickle) and print its hash."""
    corpus = load_corpus(dataset, None, split, root, _parse_options(dataset_options))
    corpus = judged_cli.attach_specs(corpus, judgments, root, captions_json)
    path = corpus.save(output)
    click.echo(f"{corpus}: saved to {path} (content hash {corpus.content_hash})")
