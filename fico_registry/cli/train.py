"""`fico train MODEL`: run a registered training recipe on a dataset's train split, select on its val split.

What the command hands a recipe (TrainerSpec.factory):
    train(model=<canonical name>, train=Corpus, val=Corpus, out=Path, options=dict, device=str, progress=bool)
`options` = the recipe's published defaults, overridden by `--set key=value`, plus these keys
that every recipe receives: "config" (the model card's config NAME, or the full config dict
when `--set config.KEY=value` changed it), "epochs", "seed", "resume" (bool) and "precision"
("fp32" | "fp16" | "bf16"). The recipe writes its checkpoints (original layout) in `out` and
returns a dict with at least "checkpoint"; this command adds the run record and writes run.json.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from fico_registry.cli.evaluate import FEATURES_HELP
from fico_registry.cli.options import dataset_option, root_option
from fico_registry.errors import ConfigError, OptionError

SYNTHETIC_SIZES = {"train": 1000, "val": 200}


def parse_settings(pairs: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`key=value` pairs (values read as JSON when they parse) -> (recipe options, model-config overrides)."""
    options: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise OptionError(f"--set {pair!r}: use key=value (config.KEY=value for the model config)")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if key.startswith("config."):
            config[key[len("config.") :]] = value
        else:
            options[key] = value
    return options, config


def resolve_config(model_spec: Any, name: str, overrides: dict[str, Any]) -> str | dict[str, Any]:
    if name not in model_spec.configs:
        raise ConfigError(f"{model_spec.name} has no config {name!r}; it has: {', '.join(model_spec.configs)}")
    if not overrides:
        return name
    base = dict(model_spec.configs[name])
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ConfigError(f"{model_spec.name} config has no keys {unknown}; it has: {', '.join(sorted(base))}")
    return {**base, **overrides}


def load_splits(
    dataset: str,
    root: Path | None,
    train_split: str,
    val_split: str,
    sizes: dict[str, int | None],
    dataset_options: dict[str, Any],
    features: Sequence[Any] = (),
) -> tuple[Any, Any]:
    """The train and validation corpora, with any --features files attached. Synthetic: generated at
    the requested sizes; else the first N images if asked."""
    from fico_registry.data import load_dataset
    from fico_registry.data.attach import attach_feature_files

    if train_split == val_split:
        raise OptionError(
            "the validation split must differ from the training split (model selection never sees training data)"
        )
    if val_split == "test":
        raise OptionError("model selection on the test split is not allowed: pass --val-split val (or dev)")
    corpora = []
    for role, split in (("train", train_split), ("val", val_split)):
        size = sizes.get(role)
        if dataset == "synthetic":
            n = size or SYNTHETIC_SIZES[role]
            # one synthetic corpus per folder: each split gets its own under --root
            where = None if root is None else root / split
            corpus = load_dataset("synthetic", split=split, root=where, n_images=n, **dataset_options)
            corpora.append(attach_feature_files(corpus, features, split))
        else:
            corpus = attach_feature_files(
                load_dataset(dataset, split=split, root=root, **dataset_options), features, split
            )
            corpora.append(corpus.subset(size) if size else corpus)
    return corpora[0], corpora[1]


def saved_corpora(
    dataset: str | None, corpus: Path | None, val_corpus: Path | None, features: Sequence[Any]
) -> tuple[Any, Any] | None:
    """--corpus / --val-corpus as (train, val) corpora with any --features attached, or None without them."""
    if corpus is None and val_corpus is None:
        return None
    if dataset is not None:
        raise OptionError("give --dataset or --corpus (with --val-corpus), not both")
    if corpus is None or val_corpus is None:
        raise OptionError("--corpus (training) and --val-corpus (model selection) go together: give both")
    from fico_registry.data import Corpus
    from fico_registry.data.attach import attach_feature_files

    train, val = Corpus.load(corpus), Corpus.load(val_corpus)
    if train.content_hash == val.content_hash:
        raise OptionError("--val-corpus is the training corpus: model selection never sees training data")
    return attach_feature_files(train, features, train.split), attach_feature_files(val, features, val.split)


def evaluate_hint(
    model: str,
    config: str | dict[str, Any],
    checkpoint: Path,
    dataset: str,
    root: Path | None,
    out: Path,
    feature_files: Sequence[str] = (),
) -> str:
    """The exact `fico evaluate` command that scores the trained checkpoint on the test split."""
    if root is not None and dataset == "synthetic":
        root = root / "test"
    where = f" --root {shlex.quote(str(root))}" if root else ""
    if isinstance(config, str):
        cfg = "" if config == "default" else f" --config {shlex.quote(config)}"
    else:  # a changed config travels as the run's config.json
        cfg = f" --config {shlex.quote(str(out / 'config.json'))}"
    features = _features_arguments(feature_files)
    weights = shlex.quote(str(checkpoint))
    return f"fico evaluate {model}{cfg} --checkpoint {weights} --dataset {dataset}{where} --split test{features}"


def _features_arguments(feature_files: Sequence[str]) -> str:
    return "".join(f" --features {shlex.quote(value)}" for value in feature_files)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


@click.command("train")
@click.argument("model")
@dataset_option
@click.option(
    "--corpus",
    type=click.Path(exists=True, path_type=Path),
    help="A saved Corpus (Corpus.save) to train on, instead of --dataset; needs --val-corpus.",
)
@click.option(
    "--val-corpus",
    type=click.Path(exists=True, path_type=Path),
    help="A saved Corpus for model selection (with --corpus).",
)
@root_option
@click.option("--dataset-option", "dataset_options", multiple=True, help="key=value passed to the dataset loader.")
@click.option("--train-split", default="train", show_default=True)
@click.option("--val-split", default="val", show_default=True, help="Model selection split (never test).")
@click.option(
    "--train-images", type=int, help="Synthetic: train size (default 1000); other datasets: use the first N images."
)
@click.option(
    "--val-images", type=int, help="Synthetic: validation size (default 200); other datasets: the first N images."
)
@click.option(
    "--config",
    "config_name",
    default="default",
    show_default=True,
    help="Named config of the model card (`fico info MODEL`).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    help="key=value recipe option (see the recipe's defaults); config.KEY=value changes the model config.",
)
@click.option("--epochs", type=int, help="Number of epochs (default: the recipe's published one).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "-o", "--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder (default: runs/MODEL-DATASET)."
)
@click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 (under torchrun: one GPU per rank)."
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "bf16"]),
    default="fp32",
    show_default=True,
    help="Autocast precision (fp16 needs CUDA).",
)
@click.option(
    "--resume/--no-resume", default=True, show_default=True, help="Continue from the run folder's last checkpoint."
)
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON instead of a summary.")
@click.option("--show-recipe", is_flag=True, help="Print the recipe (defaults, where they come from) and exit.")
@click.option("--features", "feature_files", multiple=True, help=FEATURES_HELP)
def train_cmd(
    model: str,
    dataset: str | None,
    corpus: Path | None,
    val_corpus: Path | None,
    root: Path | None,
    dataset_options: tuple[str, ...],
    train_split: str,
    val_split: str,
    train_images: int | None,
    val_images: int | None,
    config_name: str,
    settings: tuple[str, ...],
    epochs: int | None,
    seed: int,
    out: Path | None,
    device: str,
    precision: str,
    resume: bool,
    progress: bool | None,
    as_json: bool,
    show_recipe: bool,
    feature_files: tuple[str, ...],
) -> None:
    """Train MODEL with its registered recipe (--show-recipe prints it); writes checkpoints in the original layout."""
    from fico_registry.cli.evaluate import _parse_options
    from fico_registry.data.attach import parse_feature_files
    from fico_registry.plugin_api.registry import get_model_spec, get_trainer_spec
    from fico_registry.runtime import distributed as _dist
    from fico_registry.runtime.distributed import is_main_process

    trainer = get_trainer_spec(model)
    model_spec = get_model_spec(trainer.model)
    if show_recipe:
        click.echo(json.dumps(trainer.to_dict(), indent=2))
        return
    options = recipe_options(trainer, model_spec, config_name, settings, epochs)
    options.update(seed=seed, resume=resume, precision=precision)
    files = parse_feature_files(feature_files)

    distributed, device = _join_device(device)
    saved = saved_corpora(dataset, corpus, val_corpus, files)
    source = TrainingData(
        dataset or ("corpus" if saved else "synthetic"), root, train_split, val_split, corpus, val_corpus, feature_files
    )
    out = out or Path("runs") / f"{model_spec.name}-{source.dataset}"
    try:
        train, val = saved or load_splits(
            source.dataset,
            root,
            train_split,
            val_split,
            {"train": train_images, "val": val_images},
            _parse_options(dataset_options),
            files,
        )
        run = _run_recipe(trainer, model_spec.name, train, val, options, out, device, progress, distributed)
        if not is_main_process():
            return
        record = _run_record(trainer, model_spec.name, train, val, options, run, source, out)
        _write_json(out / "run.json", record)
        _summary(record, out, as_json)
    finally:
        if distributed:
            _dist.destroy()


COMMON_OPTIONS = ("config", "epochs", "seed", "resume", "precision")  # what every recipe receives


def recipe_options(
    trainer: Any, model_spec: Any, config_name: str, settings: tuple[str, ...], epochs: int | None
) -> dict[str, Any]:
    """The recipe's published defaults, overridden by --set, with the model config and --epochs resolved."""
    set_options, config_overrides = parse_settings(settings)
    unknown = sorted(set(set_options) - set(trainer.defaults) - set(COMMON_OPTIONS))
    if unknown:
        raise OptionError(
            f"{model_spec.name} recipe has no options {unknown}; it has: {', '.join(sorted(trainer.defaults))}"
        )
    options: dict[str, Any] = {**trainer.defaults, **set_options}
    options["config"] = resolve_config(model_spec, config_name, config_overrides)
    if epochs is not None:
        options["epochs"] = epochs
    return options


@dataclass(frozen=True)
class TrainingData:
    """Where a run's corpora come from: a dataset's train and val splits, or two saved corpora."""

    dataset: str  # a registered dataset, "synthetic", or "corpus" for --corpus / --val-corpus
    root: Path | None
    train_split: str
    val_split: str
    corpus: Path | None
    val_corpus: Path | None
    feature_files: tuple[str, ...]

    def record(self, train: Any, val: Any) -> dict[str, Any]:
        """The run record's "dataset" entry."""
        data: dict[str, Any] = {
            "name": self.dataset,
            "root": None if self.root is None else str(self.root),
            "train_split": self.train_split,
            "val_split": self.val_split,
        }
        if self.corpus is not None:
            data.update(
                train_corpus=str(self.corpus),
                val_corpus=str(self.val_corpus),
                train_split=train.split,
                val_split=val.split,
            )
        if self.feature_files:
            data["features"] = list(self.feature_files)
        return data

    def evaluate_hint(self, model: str, config: str | dict[str, Any], checkpoint: Path, out: Path) -> str:
        """The `fico evaluate` command for the test split (of the dataset, or a test corpus the user names)."""
        hint = evaluate_hint(model, config, checkpoint, self.dataset, self.root, out, self.feature_files)
        if self.corpus is None:
            return hint
        # the test split is not among the saved corpora: the user names it
        return hint.split(" --dataset ")[0] + " --corpus TEST_CORPUS" + _features_arguments(self.feature_files)


def _join_device(device: str) -> tuple[bool, str]:
    """(launched by torchrun, the device to train on): under torchrun the rank joins its process group."""
    from fico_registry.runtime import distributed as _dist
    from fico_registry.runtime.devices import resolve_device

    if _dist.launched_by_torchrun():
        return True, _dist.init_process_group(device)
    return False, str(resolve_device(None if device == "auto" else device))


@dataclass(frozen=True)
class RecipeRun:
    """What the recipe returned, and when it ran."""

    result: dict[str, Any]
    started: float
    finished: float


def _run_recipe(
    trainer: Any,
    name: str,
    train: Any,
    val: Any,
    options: dict[str, Any],
    out: Path,
    device: str,
    progress: bool | None,
    distributed: bool,
) -> RecipeRun:
    """Call the recipe on every rank (rank 0 creates the run folder and shows progress)."""
    from fico_registry.plugin_api.registry import resolve_callable
    from fico_registry.runtime import distributed as _dist
    from fico_registry.runtime.distributed import is_main_process

    main = is_main_process()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        click.echo(f"training {name} on {train!r}, selecting on {val!r}; run folder {out}", err=True)
    if distributed:
        _dist.barrier()
    factory = resolve_callable(trainer.factory)
    show = progress if progress is not None else sys.stderr.isatty() and not os.environ.get("FICO_NO_PROGRESS")
    if main and not show:
        _log_epochs_to_stderr()  # recipes' per-epoch lines, without bars
    started = time.time()
    result = factory(
        model=name, train=train, val=val, out=out, options=options, device=device, progress=bool(main and show)
    )
    finished = time.time()
    if not isinstance(result, dict) or "checkpoint" not in result:
        raise ConfigError(f"the {name} recipe ({trainer.factory}) returned no run record with a 'checkpoint'")
    return RecipeRun(result, started, finished)


def _run_record(
    trainer: Any,
    name: str,
    train: Any,
    val: Any,
    options: dict[str, Any],
    run: RecipeRun,
    source: TrainingData,
    out: Path,
) -> dict[str, Any]:
    """The run record (what ran, on what, with which versions, and how to evaluate it); writes a changed
    model config to out/config.json."""
    from fico_registry.training.common import package_versions, run_record

    record = run_record(
        model=name,
        train_corpus=train,
        val_corpus=val,
        seed=options["seed"],
        epochs=int(options.get("epochs", 0)),
        options=options,
        started=run.started,
        finished=run.finished,
    )
    record.update({k: v for k, v in run.result.items() if k not in ("model",)})
    if trainer.distribution:
        record["versions"].update(package_versions((trainer.distribution,)))
    record["recipe"] = {
        "factory": trainer.factory,
        "paper_recipe": trainer.paper_recipe,
        "distribution": trainer.distribution,
    }
    record["dataset"] = source.record(train, val)
    record["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
    config = run.result.get("config", options["config"])  # the recipe may have changed it (e.g. a new vocabulary)
    record["config"] = config
    if isinstance(config, dict):
        _write_json(out / "config.json", config)
    record["evaluate"] = source.evaluate_hint(name, config, Path(record["checkpoint"]), out)
    return record


def _log_epochs_to_stderr() -> None:
    import logging

    logger = logging.getLogger("fico_registry.training")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _summary(record: dict[str, Any], out: Path, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fico train: {record['model']}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key in ("checkpoint", "best_epoch", "best_rsum", "epochs_run", "seconds"):
        if record.get(key) is not None:
            value = record[key]
            table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    table.add_row("run record", str(out / "run.json"))
    console = Console()
    console.print(table)
    console.print("evaluate on the test split with:", highlight=False)
    console.print(f"  {record['evaluate']}", highlight=False, soft_wrap=True)
