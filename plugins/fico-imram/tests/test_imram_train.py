"""IMRAM training recipe: train_gpus.py's checkpoint layout, strict reloading, resuming, reduced
precision, and 2 torch.distributed ranks (gloo) training like one process."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from fico_imram import train as T
from fico_scan.testing import check_scores_like_best_validation, synthetic_corpora, train_straight_and_resumed

from fico_registry import load_model
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint
from fico_registry.plugin_api.registry import get_trainer_spec
from fico_registry.plugin_api.training import rank_testing

OPTIONS = {"config": "tiny-full", "batch_size": 32, "val_batch_size": 16}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return synthetic_corpora(tmp_path_factory.mktemp("synthetic"), n_train_images=20)


def test_recipe_defaults_are_the_published_ones() -> None:
    spec = get_trainer_spec("imram")
    assert spec.factory == "fico_imram.train:train"
    d = spec.defaults
    assert (d["epochs"], d["learning_rate"], d["lr_update"], d["grad_clip"], d["margin"], d["max_violation"]) == (
        30,
        0.0002,
        15,
        2.0,
        0.2,
        True,
    )


def _train(corpora: tuple[Any, Any], out: Path, **options: Any) -> dict[str, Any]:
    train, val = corpora
    return T.train(model="imram", train=train, val=val, out=out, options={**OPTIONS, **options}, device="cpu")


def test_trains_and_writes_the_original_layout(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    record = _train(corpora, tmp_path / "run", epochs=2)
    assert record["epochs_run"] == 2 and record["best_rsum"] > 0
    ck = load_torch_checkpoint(record["checkpoint"])
    assert {"epoch", "model", "best_rsum", "opt"} <= set(ck) and "Eiters" not in ck
    assert ck["epoch"] == record["best_epoch"]  # train_gpus.py saves epoch + 1
    assert all(k.startswith("module.") for k in ck["model"])
    assert {"module.img_enc.fc_local.weight", "module.linear_t2i.weight", "module.gate_i2t.bias"} <= set(ck["model"])
    opt = ck["opt"]
    assert isinstance(opt, argparse.Namespace)
    assert (opt.model_mode, opt.iteration_step, opt.no_IMRAM_norm, opt.agg_func, opt.gpuid) == (
        "full_IMRAM",
        3,
        False,
        "Mean",
        "0",
    )
    assert opt.vocab_size == ck["model"]["module.txt_enc.embed.weight"].shape[0]

    model = load_model("imram", checkpoint=record["checkpoint"], device="cpu")
    for key, value in model.encoder.original_state().items():
        torch.testing.assert_close(value, ck["model"][key], rtol=0, atol=0)
    check_scores_like_best_validation(model, corpora[1], record)


def test_resuming_equals_an_uninterrupted_run(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    straight, resumed = train_straight_and_resumed(partial(_train, corpora), tmp_path, config="tiny")
    a = load_torch_checkpoint(Path(straight["last_checkpoint"]))
    b = load_torch_checkpoint(Path(resumed["last_checkpoint"]))
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6)


def test_bf16_autocast_trains_and_saves_float32(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    record = _train(corpora, tmp_path / "run", epochs=1, precision="bf16")
    state = load_torch_checkpoint(record["checkpoint"])
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())
    assert torch.isfinite(torch.tensor(record["history"][0]["loss"]))


# -- torch.distributed: 2 gloo ranks on CPU train like one process with the whole batch ------------------
def _sharded_worker(rank: int, world: int, port: int, corpora: tuple[Any, Any], out: str) -> None:
    """One rank: one epoch of the recipe; rank 1 records what it writes in the run folder."""
    run = {
        "model": "imram",
        "train": corpora[0],
        "val": corpora[1],
        "out": Path(out),
        "options": {**OPTIONS, "epochs": 1},
    }
    writes = rank_testing.train_on_rank(rank, world, port, T.train, [run], watch=out)
    Path(out).with_name(f"writes-rank{rank}.txt").write_text("\n".join(writes))


@pytest.mark.slow
def test_two_ranks_train_like_one_process(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    """Full-IMRAM (3 steps, both directions), 100 captions in batches of 32 (the last, 4, split 2 + 2):
    2 ranks give one process's weights. IMRAM's encoders have no dropout and no BatchNorm."""
    single = _train(corpora, tmp_path / "single", epochs=1)
    out = tmp_path / "sharded"
    rank_testing.spawn_ranks(_sharded_worker, corpora, str(out))
    assert (tmp_path / "writes-rank1.txt").read_text() == ""  # only rank 0 wrote the run folder
    a = load_torch_checkpoint(single["last_checkpoint"])["model"]
    b = load_torch_checkpoint(out / "checkpoint.pth.tar")["model"]
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=1e-5, msg=key)
