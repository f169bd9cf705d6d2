"""SCAN training recipe: the original loss and schedule, checkpoints in the original layout, resuming,
reduced precision, and 2 torch.distributed ranks (gloo) training like one process."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from fico_scan import train as T
from fico_scan.plugin import TRAIN_DEFAULTS
from fico_scan.testing import check_scores_like_best_validation, synthetic_corpora, train_straight_and_resumed

from fico_registry import load_model
from fico_registry.errors import ConfigError
from fico_registry.plugin_api.captions import load_vocab_json
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint
from fico_registry.plugin_api.registry import get_trainer_spec
from fico_registry.plugin_api.training import rank_testing

OPTIONS = {"config": "tiny", "batch_size": 32, "val_batch_size": 16}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return synthetic_corpora(tmp_path_factory.mktemp("synthetic"), n_train_images=24)


def _loop_loss(scores: torch.Tensor, margin: float, max_violation: bool) -> float:
    """ContrastiveLoss written out per query."""
    n = len(scores)
    total = 0.0
    for i in range(n):  # image i: its caption i against the other captions
        costs = [max(0.0, margin + float(scores[i, j] - scores[i, i])) for j in range(n) if j != i]
        total += max(costs) if max_violation else sum(costs)
    for j in range(n):  # caption j: its image j against the other images
        costs = [max(0.0, margin + float(scores[i, j] - scores[j, j])) for i in range(n) if i != j]
        total += max(costs) if max_violation else sum(costs)
    return total


@pytest.mark.parametrize("max_violation", [True, False])
def test_loss_is_the_original_contrastive_loss(max_violation: bool) -> None:
    scores = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = float(T.contrastive_loss(scores, 0.2, max_violation))
    assert got == pytest.approx(_loop_loss(scores, 0.2, max_violation), rel=1e-12)


def test_learning_rate_schedule() -> None:
    opts = T.TrainOptions.from_dict({}, get_trainer_spec("scan").defaults, model="scan")
    assert (opts.learning_rate, opts.lr_update, opts.epochs, opts.grad_clip, opts.margin) == (0.0002, 15, 30, 2.0, 0.2)
    assert [T.learning_rate(opts, e) for e in (0, 14, 15, 29)] == pytest.approx([2e-4, 2e-4, 2e-5, 2e-5])


def test_bad_options_are_errors() -> None:
    with pytest.raises(ConfigError, match="unknown scan training options \\['epoch'\\]"):
        T.TrainOptions.from_dict({"epoch": 3}, get_trainer_spec("scan").defaults, model="scan")
    with pytest.raises(ConfigError, match="batch_size must be at least 2"):
        T.TrainOptions.from_dict({"batch_size": 1}, get_trainer_spec("scan").defaults, model="scan")
    with pytest.raises(ConfigError, match="warmup_epochs must be an integer >= 0"):
        T.TrainOptions.from_dict({"warmup_epochs": -1}, get_trainer_spec("scan").defaults, model="scan")
    assert get_trainer_spec("scan").defaults["warmup_epochs"] == 0  # the published recipe has no warm-up


def _train(corpora: tuple[Any, Any], out: Path, **options: Any) -> dict[str, Any]:
    train, val = corpora
    return T.train(model="scan", train=train, val=val, out=out, options={**OPTIONS, **options}, device="cpu")


def test_trains_and_writes_the_original_layout(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    record = _train(corpora, tmp_path / "run", epochs=2)
    assert record["epochs_run"] == 2 and len(record["history"]) == 2
    assert record["best_rsum"] == max(h["val_rsum"] for h in record["history"]) > 0
    ck = load_torch_checkpoint(record["checkpoint"])
    assert {"epoch", "model", "best_rsum", "opt", "Eiters"} <= set(ck)
    assert ck["epoch"] == record["best_epoch"] - 1  # train.py saves the 0-based epoch
    img_state, txt_state = ck["model"]
    assert set(img_state) == {"fc.weight", "fc.bias"} and "rnn.weight_hh_l0_reverse" in txt_state
    opt = ck["opt"]
    assert isinstance(opt, argparse.Namespace)
    assert (opt.margin, opt.max_violation, opt.learning_rate, opt.grad_clip, opt.num_epochs) == (
        0.2,
        True,
        0.0002,
        2.0,
        2,
    )
    assert (opt.embed_size, opt.cross_attn, opt.agg_func, opt.bi_gru, opt.data_name) == (
        16,
        "t2i",
        "LogSumExp",
        True,
        "synthetic_precomp",
    )
    vocab = load_vocab_json(Path(record["vocab_file"]))
    assert Path(record["vocab_file"]).name == "synthetic_precomp_vocab.json"
    assert opt.vocab_size == len(vocab) == txt_state["embed.weight"].shape[0]
    assert "circle" in vocab.word2idx

    # the evaluator loads it strictly, with the vocabulary beside it, and scores like the last validation
    model = load_model("scan", checkpoint=record["checkpoint"], device="cpu")
    for mine, theirs in zip(
        [model.encoder.scorer.img_enc.state_dict(), model.encoder.scorer.txt_enc.state_dict()], ck["model"], strict=True
    ):
        for key in theirs:
            torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0)
    check_scores_like_best_validation(model, corpora[1], record)


def test_resuming_equals_an_uninterrupted_run(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    straight, resumed = train_straight_and_resumed(partial(_train, corpora), tmp_path, config="tiny-i2t")
    a = load_torch_checkpoint(Path(straight["last_checkpoint"]))
    b = load_torch_checkpoint(Path(resumed["last_checkpoint"]))
    assert a["epoch"] == b["epoch"] == 1 and a["Eiters"] == b["Eiters"]
    for sa, sb in zip(a["model"], b["model"], strict=True):
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-6)
    assert [h["val_rsum"] for h in straight["history"]] == pytest.approx([h["val_rsum"] for h in resumed["history"]])


def test_resuming_refuses_another_architecture(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    _train(corpora, tmp_path / "run", epochs=1)
    with pytest.raises(ConfigError, match="cross_attn"):
        _train(corpora, tmp_path / "run", epochs=2, config="tiny-i2t")


def test_bf16_autocast_trains_and_saves_float32(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    record = _train(corpora, tmp_path / "run", epochs=1, precision="bf16")
    state = load_torch_checkpoint(record["checkpoint"])
    assert all(t.dtype == torch.float32 for part in state["model"] for t in part.values() if t.is_floating_point())
    assert torch.isfinite(torch.tensor(record["history"][0]["loss"]))


# -- torch.distributed: 2 gloo ranks on CPU train like one process with the whole batch ------------------
def _sharded_worker(
    rank: int, world: int, port: int, corpora: tuple[Any, Any], out: str, runs: list[dict[str, Any]]
) -> None:
    """One rank: the recipe once per options dict in `runs` (later ones resume); rank 1 records its writes."""
    calls = [
        {"model": "scan", "train": corpora[0], "val": corpora[1], "out": Path(out), "options": {**OPTIONS, **options}}
        for options in runs
    ]
    writes = rank_testing.train_on_rank(rank, world, port, T.train, calls, watch=out)
    Path(out).with_name(f"writes-rank{rank}.txt").write_text("\n".join(writes))


@pytest.mark.slow
def test_two_ranks_train_like_one_process(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    """2 ranks (1 epoch, then resumed to 2) give the weights of one process training 2 epochs straight.

    120 captions in batches of 32: the last batch of each epoch (24 captions) is split 12 + 12 and
    trained on, as one process does. SCAN's encoders have no dropout and no BatchNorm.
    """
    single = _train(corpora, tmp_path / "single", epochs=2)
    out = tmp_path / "sharded"
    rank_testing.spawn_ranks(_sharded_worker, corpora, str(out), [{"epochs": 1}, {"epochs": 2}])
    assert (tmp_path / "writes-rank1.txt").read_text() == ""  # only rank 0 wrote the run folder
    a = load_torch_checkpoint(single["last_checkpoint"])
    b = load_torch_checkpoint(out / "checkpoint.pth.tar")
    assert a["Eiters"] == b["Eiters"] == 2 * 4 and a["epoch"] == b["epoch"] == 1
    # Adam divides each weight's step by its gradient's RMS, so the rounding difference between summing
    # 24 captions and 12 + 12 is amplified most where gradients are smallest. Measured with
    # OMP_NUM_THREADS=1 (fc.weight, 8 steps at lr 2e-4): median 1.6e-7, 99.9th percentile 3.6e-6, max
    # 1.04e-5 at a weight whose gradient is 50x below the median. Bound: a tenth of one step's lr.
    atol = TRAIN_DEFAULTS["learning_rate"] / 10
    for part_a, part_b in zip(a["model"], b["model"], strict=True):
        assert part_a.keys() == part_b.keys()
        for key, value in part_a.items():
            torch.testing.assert_close(part_b[key], value, rtol=0, atol=atol, msg=key)
    assert [h["loss"] for h in b["fico_resume"]["history"]] == pytest.approx(
        [h["loss"] for h in single["history"]], rel=1e-5
    )
