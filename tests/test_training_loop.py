"""The shared training loop (fico_registry.training.loop), its options, batches and the shared hinge loss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from fico_registry.errors import ConfigError, ShapeError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint
from fico_registry.training import loop
from fico_registry.training.common import Checkpointer
from fico_registry.training.losses import vse_hinge_loss


# -- the per-epoch seed --------------------------------------------------------------------------------
def test_epoch_seed_formula_and_distinct_streams():
    assert loop.epoch_seed(0, 0) == 0 and loop.epoch_seed(2, 3, 1) == 2 * 100_003 + 3 * 1_009 + 1
    seeds = {loop.epoch_seed(s, e, r) for s in range(5) for e in range(200) for r in range(8)}
    assert len(seeds) == 5 * 200 * 8


# -- options -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToyOptions(loop.RecipeOptions):
    lr: float

    DEFAULTS: ClassVar[dict[str, Any]] = {"epochs": 3, "batch_size": 4, "lr": 0.1, "config": "tiny"}
    TITLE = "toy"
    POSITIVE = ("epochs", "batch_size")

    def check(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")


def test_options_merge_defaults_and_check():
    opts = ToyOptions.from_dict({"lr": 0.5, "seed": 3})
    assert (opts.epochs, opts.batch_size, opts.lr, opts.seed, opts.resume) == (3, 4, 0.5, 3, True)
    with pytest.raises(ConfigError, match=r"unknown toy training options \['lrate'\]: the recipe has no options lrate"):
        ToyOptions.from_dict({"lrate": 1})
    with pytest.raises(ConfigError, match="toy training option batch_size must be a positive integer, got 0"):
        ToyOptions.from_dict({"batch_size": 0})
    with pytest.raises(ConfigError, match="positive integer, got True"):
        ToyOptions.from_dict({"epochs": True})
    with pytest.raises(ConfigError, match="lr must be > 0"):
        ToyOptions.from_dict({"lr": 0})
    with pytest.raises(ConfigError, match=r"options \['lr'\] have no default"):
        ToyOptions.from_dict({}, {"epochs": 1, "batch_size": 2, "config": "tiny"})


def test_model_config_resolution_is_load_models_and_a_copy():
    cfg, name = loop.resolve_model_config("adv-64", "tiny")
    cfg["bert_config"]["vocab_size"] = -1
    again, _ = loop.resolve_model_config("adv-64", "tiny")
    assert name == "tiny" and again["bert_config"]["vocab_size"] != -1
    custom, name = loop.resolve_model_config("adv-64", {"final_dims": 8})
    assert name is None and custom["final_dims"] == 8 and "bert_config" in custom
    with pytest.raises(ConfigError, match="has no config 'huge'"):
        loop.resolve_model_config("adv-64", "huge")


# -- batches -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "batch", "world"), [(10, 4, 1), (10, 4, 2), (13, 6, 3), (7, 2, 2)])
def test_rank_batches_deal_each_global_batch_over_the_ranks(n, batch, world):
    order = np.random.default_rng(0).permutation(n)
    per_rank = [loop.rank_batches(order, batch, r, world) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1  # every rank runs the same number of steps
    usable = n - n % world
    for k in range(len(per_rank[0])):
        together = sorted(int(i) for r in range(world) for i in per_rank[r][k])
        assert together == sorted(int(i) for i in order[k * batch : min((k + 1) * batch, usable)])


def test_rank_batches_leave_out_a_global_batch_below_the_minimum():
    batches = loop.rank_batches(np.arange(9), 4, 0, 1, min_global=2)
    assert [len(b) for b in batches] == [4, 4]


# -- the shared hinge loss -----------------------------------------------------------------------------
def _hinge_by_loops(scores: torch.Tensor, margin: float, max_violation: bool) -> float:
    n, total = len(scores), 0.0
    for i in range(n):  # image i against the other captions
        costs = [max(0.0, margin + float(scores[i, j] - scores[i, i])) for j in range(n) if j != i]
        total += max(costs) if max_violation else sum(costs)
    for j in range(n):  # caption j against the other images
        costs = [max(0.0, margin + float(scores[i, j] - scores[j, j])) for i in range(n) if i != j]
        total += max(costs) if max_violation else sum(costs)
    return total


@pytest.mark.parametrize("max_violation", [True, False])
def test_vse_hinge_loss_against_loops(max_violation):
    scores = torch.randn(7, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = float(vse_hinge_loss(scores, 0.2, max_violation))
    assert got == pytest.approx(_hinge_by_loops(scores, 0.2, max_violation), rel=1e-12)


def test_vse_hinge_loss_hand_example_and_bad_shape():
    scores = torch.tensor([[1.0, 0.9], [0.0, 1.0]])  # only image 0 / caption 1 violate: 0.2 + 0.9 - 1 = 0.1
    assert float(vse_hinge_loss(scores, 0.2, True)) == pytest.approx(0.1 + 0.1)
    with pytest.raises(ShapeError, match="square"):
        vse_hinge_loss(torch.zeros(2, 3), 0.2, True)


# -- the loop on a toy recipe: least squares, validated every other epoch ---------------------------------
class ToyRecipe(loop.EpochRecipe):
    best_key = "best_score"
    initial_best = -float("inf")

    def __init__(self, *, model: str, train: Any, val: Any, out: Path, opts: ToyOptions, device: str,
                 progress: bool = False) -> None:  # fmt: skip
        super().__init__(model=model, out=out, opts=opts, device=device)
        torch.manual_seed(opts.seed)
        self.x = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
        self.net = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=opts.lr)
        self.checkpointer = Checkpointer(self.out)
        self.noise: list[float] = []

    def restore(self) -> loop.LoopState | None:
        state = self.checkpointer.latest()
        if state is None:
            return None
        self.net.load_state_dict(state["model"])
        loop.restore_optimizers(state["fico_resume"], self.optimizer)
        extra = state["fico_resume"]
        return loop.LoopState(state["epoch"], extra["best"], extra["best_epoch"], extra["iters"], extra["history"])

    def learning_rate(self, epoch: int) -> float:
        return self.opts.lr * 0.5**epoch

    def n_samples(self) -> int:
        return len(self.x)

    def begin_epoch(self, epoch: int, order: np.ndarray) -> list[np.ndarray]:
        return loop.rank_batches(order, self.opts.batch_size, self.rank, self.world)

    def step(self, batch: np.ndarray, epoch: int, step: int) -> float:
        noise = float(torch.rand(()))  # the per-epoch seeded stream, as dropout would draw it
        loss = ((self.net(self.x[batch]).squeeze(1) - self.y[batch]) ** 2).mean() * (1 + 0.01 * noise)
        loop.optimizer_step(loss, self.optimizer, list(self.net.parameters()), grad_clip=10.0)
        return float(loss.detach())

    def validate(self, epoch: int) -> loop.Validation | None:
        if epoch % 2:
            return None
        with torch.no_grad():
            score = -float(((self.net(self.x).squeeze(1) - self.y) ** 2).mean())
        return loop.Validation(score, {"val_score": score})

    def checkpoint(self, epoch: int, state: loop.LoopState) -> dict[str, Any]:
        extra = {"optimizer": self.optimizer.state_dict(), "best": state.best, "best_epoch": state.best_epoch,
                 "iters": state.iters, "history": state.history}  # fmt: skip
        return {"epoch": epoch + 1, "model": self.net.state_dict(), "fico_resume": extra}

    def result(self) -> dict[str, Any]:
        return {"objective": "least squares"}


toy_train = loop.recipe_trainer(ToyRecipe, ToyOptions, "Train the toy.")
TOY_MODEL = "adv-64"  # any registered card: the loop resolves its config (tiny); the toy does not use it


def test_the_loop_trains_selects_records_and_checkpoints(tmp_path):
    record = toy_train(model=TOY_MODEL, train=None, val=None, out=tmp_path, options={"epochs": 3})
    assert toy_train.__doc__ == "Train the toy."
    history = record["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3] and [h["lr"] for h in history] == [0.1, 0.05, 0.025]
    assert "val_score" in history[0] and "val_score" not in history[1]  # epoch 2 is not validated
    assert history[2]["loss"] < history[0]["loss"] and record["epochs_run"] == 3
    assert record["best_epoch"] == 3 and record["best_score"] == history[2]["val_score"]
    assert record["objective"] == "least squares" and Path(record["checkpoint"]).name == "model_best.pth.tar"
    state = load_torch_checkpoint(record["last_checkpoint"])
    assert state["epoch"] == 3 and state["fico_resume"]["iters"] == 3 * 5  # 20 samples / 4 per step
    assert not list(tmp_path.glob("*.tmp"))  # the atomic writes left no temporary file


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight = toy_train(model=TOY_MODEL, train=None, val=None, out=tmp_path / "a", options={"epochs": 3})
    toy_train(model=TOY_MODEL, train=None, val=None, out=tmp_path / "b", options={"epochs": 1})
    resumed = toy_train(model=TOY_MODEL, train=None, val=None, out=tmp_path / "b", options={"epochs": 3})
    assert resumed["epochs_run"] == 2 and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    a = load_torch_checkpoint(straight["last_checkpoint"])["model"]
    b = load_torch_checkpoint(resumed["last_checkpoint"])["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in straight["history"]] == [h["loss"] for h in resumed["history"]]
    again = toy_train(model=TOY_MODEL, train=None, val=None, out=tmp_path / "b", options={"epochs": 3})
    assert again["epochs_run"] == 0 and again["best_epoch"] == 3  # nothing to train: the record stands
