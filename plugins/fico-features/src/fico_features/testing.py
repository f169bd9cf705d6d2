"""Checks and fixtures that the tests of the hashing plugins (fico-dadh, fico-ucch) share.

Both models read this plugin's features, give binary codes compared by Hamming distance, and are
trained by a recipe registered under the model's name: what their tests assert about an end-to-end
report, a registered trainer, a training run, resuming it or a bf16 run is the same, so it is written
once here. It imports
pytest, torch and fico_registry's public API; only tests import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from fico_registry.errors import ConfigError
from fico_registry.plugin_api.fixtures import evaluate_on_synthetic


def training_fixtures(
    model: str, synthetic_splits: Callable[..., dict[str, Any]], *, train: int, val: int = 12, test: int = 12
) -> tuple[Any, Any]:
    """The fixtures `corpora` (synthetic train/val/test splits, once a module) and `on` (what the recipe
    of `model` trains and selects on); a test module takes them with `corpora, on = training_fixtures(...)`.
    `synthetic_splits` is fico_registry.training.rank_testing's, passed in by the test: plugin code
    imports only the plugin API."""

    @pytest.fixture(scope="module")
    def corpora(tmp_path_factory):
        return synthetic_splits(tmp_path_factory.mktemp("synthetic"), train=train, val=val, test=test)

    @pytest.fixture
    def on(corpora):
        """What the recipe trains and selects on in these tests."""
        return {"model": model, "train": corpora["train"], "val": corpora["val"]}

    return corpora, on


def check_registered_trainer(model: str, **defaults: Any) -> None:
    """The recipe of `model` is registered by its plugin as `fico_<model>.train:train`, with these defaults."""
    from fico_registry.plugin_api.registry import get_trainer_spec

    spec = get_trainer_spec(model)
    assert spec.factory == f"fico_{model}.train:train" and spec.distribution == f"fico-{model}"
    for name, value in defaults.items():
        assert spec.defaults[name] == value, name


def evaluate_hamming_end_to_end(model: str, folder: Path, *, bits: int) -> dict[str, Any]:
    """Features from the registered pipelines (tiny VGG, tiny Doc2Vec), codes, Hamming, both metric levels:
    the report of `model`'s tiny config on a synthetic corpus under `folder`, checked and returned."""
    report = evaluate_on_synthetic(model, folder / "syn", n_images=10, seed=1, cache=folder / "cache", batch_size=4)
    assert report["settings"]["measure"] == "hamming" and report["settings"]["bits"] == bits
    for direction in ("i2t", "t2i"):
        assert 0 <= report["instance"][direction]["R@1"] <= report["instance"][direction]["R@10"] <= 1
        assert report["category"][direction]["mAP@N"] is not None
    return report


def check_training_run(
    train: Callable[..., Any], run: Mapping[str, Any], out: Path, options: Mapping[str, Any], *, best: str, last: str
) -> dict[str, Any]:
    """`train` writes the best and the last checkpoint under the original's file names into `out`, with a finite
    loss every epoch; returns the run record."""
    record = train(**run, out=out, options=options)
    assert record["checkpoint"] == str(out / best) and (out / last).is_file()
    assert len(record["history"]) == options["epochs"] and all(math.isfinite(h["loss"]) for h in record["history"])
    return record


def resumed_checkpoints(
    train: Callable[..., Any], run: Mapping[str, Any], out: Path, split: Path, options: Mapping[str, Any], *, last: str
) -> tuple[dict, dict]:
    """A run into `split` of all epochs but one, resumed for the last one: the last checkpoints of `out` (the
    same options in one go) and of `split`, for the caller to compare."""
    train(**run, out=split, options={**options, "epochs": options["epochs"] - 1})
    again = train(**run, out=split, options=options)
    assert again["epochs_run"] == 1 and len(again["history"]) == options["epochs"]
    return torch.load(out / last, weights_only=True), torch.load(split / last, weights_only=True)


def evaluate_with_run_inputs(model: Any, run_folder: Path, test: Any, features: Path) -> dict[str, Any]:
    """The report of `model` on the corpus `test`, its features computed by the run's own pipelines."""
    from fico_registry import evaluate

    from .run_inputs import RunInputs

    return evaluate(model, RunInputs.load(run_folder).attach(test, features), cache=False).to_dict()


def check_bf16_run(train: Callable[..., Any], run: Mapping[str, Any], out: Path, options: Mapping[str, Any]) -> dict:
    """One bf16 epoch trains with a finite loss and fp16 is refused on CPU; returns the last checkpoint, whose
    float dtypes the caller checks (its layout is the original's)."""
    record = train(**run, out=out, options={**options, "epochs": 1, "precision": "bf16"})
    state = torch.load(record["last_checkpoint"], weights_only=True)
    assert math.isfinite(record["history"][0]["loss"])
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        train(**run, out=out / "fp16", options={**options, "epochs": 1, "precision": "fp16"})
    return state
