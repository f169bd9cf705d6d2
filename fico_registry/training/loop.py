"""The epoch loop every training recipe runs; a recipe supplies its model step, loss and checkpoint layout.

Per epoch, in this order: the learning rate of the epoch, the per-epoch seed (`epoch_seed`), one
seeded sample order shared by every rank, the recipe's batches (each rank's share under torchrun),
the steps (progress bar, loss sum), the recipe's end-of-epoch update, validation, best-model
selection (rank 0 decides and broadcasts), a history row, an atomic checkpoint (rank 0 only), one
printed line, and a barrier so that no rank runs ahead of rank 0's files. Resuming restores the
recipe's state and continues after the last finished epoch.

Imported only while training (torch at the top, like `sharding`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from fico_registry.errors import ConfigError
from fico_registry.training.common import Checkpointer, TrainingProgress, seed_everything

OptionsT = TypeVar("OptionsT", bound="RecipeOptions")


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of torch's / NumPy's / Python's global generators for one epoch (of one rank).

    Re-seeding every epoch from (seed, epoch) makes a resumed run equal an uninterrupted one.
    `rank` is 0 where every rank must draw the same numbers (state updated on every rank alike:
    UCCH's memory draws, DADH's discriminator mixes), the rank where each draws its own (dropout).
    """
    return int(seed) * 100_003 + int(epoch) * 1_009 + int(rank)


# -- options ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RecipeOptions:
    """Options `fico train` gives every recipe; a recipe's dataclass adds its own fields (the published defaults).

    `POSITIVE` names the integer options that must be > 0; `check` validates the rest.
    """

    epochs: int
    batch_size: int  # the global batch: under torchrun split evenly over the ranks
    config: Any = "default"
    seed: int = 0
    resume: bool = True
    precision: str = "fp32"

    POSITIVE: ClassVar[tuple[str, ...]] = ("epochs",)
    DEFAULTS: ClassVar[Mapping[str, Any]] = {}
    TITLE: ClassVar[str] = "the"

    @classmethod
    def from_dict(
        cls: type[OptionsT], options: Mapping[str, Any], defaults: Mapping[str, Any] | None = None, *,
        title: str | None = None,
    ) -> OptionsT:  # fmt: skip
        """`defaults` (the class's DEFAULTS) with `options` over them, checked; `title` (TITLE) names the recipe."""
        title = cls.TITLE if title is None else title
        merged = {**(cls.DEFAULTS if defaults is None else defaults), **options}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ConfigError(
                f"unknown {title} training options {unknown}: the recipe has no options {', '.join(unknown)}; "
                f"known: {sorted(known)}"
            )
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = sorted(set(required) - set(merged))
        if missing:
            raise ConfigError(f"{title} training options {missing} have no default: pass them (--set KEY=VALUE)")
        opts = cls(**merged)
        for name in cls.POSITIVE:
            value = getattr(opts, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{title} training option {name} must be a positive integer, got {value!r}")
        opts.check()
        return opts

    def check(self) -> None:
        """Recipe-specific validation (raise ConfigError naming the option)."""


def resolve_model_config(model: str, config: Any) -> tuple[dict[str, Any], str | None]:
    """The model card's config (a name, or a dict over "default") as a fresh dict, and its name (None for a dict)."""
    from fico_registry.models.loading import resolve_config
    from fico_registry.plugin_api.registry import get_model_spec

    name, cfg = resolve_config(get_model_spec(model), config)
    return cfg, name


# -- what the loop carries between epochs ---------------------------------------------------------------
@dataclass
class LoopState:
    """Where a run stands: the next epoch, the best validation score and its epoch, steps taken, history."""

    start_epoch: int = 0
    best: float = 0.0
    best_epoch: int | None = None
    iters: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Validation:
    """One epoch's validation: the selection score and the history row's entries."""

    score: float
    entries: Mapping[str, Any]


def restore_optimizers(extra: Mapping[str, Any], optimizer: torch.optim.Optimizer, scaler: Any = None) -> None:
    """The optimizer (and loss scaler) state of a `fico_resume` entry, where saved."""
    if "optimizer" in extra:
        optimizer.load_state_dict(extra["optimizer"])
    if scaler is not None and extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])


def optimizer_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: Sequence[torch.nn.Parameter], *,
    scaler: Any = None, grad_clip: float = 0.0,
) -> None:  # fmt: skip
    """zero_grad, backward (through the fp16 loss scaler if any), gradient norm clipped at `grad_clip` (> 0), step."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
    if grad_clip > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()


# -- the batches of an epoch ----------------------------------------------------------------------------
def rank_batches(order: np.ndarray, batch_size: int, rank: int, world: int, *, min_global: int = 1) -> list[np.ndarray]:
    """This rank's share of each global batch of `order`, for recipes that take one sample per step row.

    Rank r takes every world-th sample (`shard`), so its step-k share is exactly its part of global
    batch k, and every rank's share of the last (short) batch has the same size. A global batch
    smaller than `min_global` is left out (a BatchNorm in train mode needs two samples).
    """
    from fico_registry.training.common import shard

    mine = shard(order, rank, world)
    local = batch_size // world
    batches = [mine[s : s + local] for s in range(0, len(mine), local)]
    return [b for b in batches if len(b) * world >= min_global]


# -- the recipe ----------------------------------------------------------------------------------------
class EpochRecipe:
    """A training recipe for `run_epochs`: the loop calls these hooks; the attributes shape it.

    Subclasses set `self.optimizer` (whose learning rate the loop schedules) and `self.checkpointer`
    in their constructor, after calling this one.
    """

    #: the result's key for the best validation score
    best_key: ClassVar[str] = "best_rsum"
    #: the best score before any validation (the originals' best_rsum = 0)
    initial_best: ClassVar[float] = 0.0
    #: history rows and best_epoch count epochs from 1 (as the originals' checkpoints) or 0
    first_epoch: ClassVar[int] = 1
    #: every rank draws its own torch numbers (dropout), or all draw the same (state kept equal on every rank)
    per_rank_seed: ClassVar[bool] = True
    #: the loss of a step is this rank's alone (per-rank terms): the epoch loss is averaged over the ranks
    loss_per_rank: ClassVar[bool] = False
    #: the printed validation, formatted with the score
    score_format: ClassVar[str] = "val rsum {:.1f}"

    optimizer: torch.optim.Optimizer
    checkpointer: Checkpointer
    scaler: Any = None  # the fp16 loss scaler, if the recipe uses one (saved for resuming)

    def __init__(self, *, model: str, out: Path, opts: RecipeOptions, device: str) -> None:
        """Rank and world, the run folder (rank 0 creates it), the model card's config as `cfg` / `config_name`."""
        from fico_registry.runtime.distributed import is_main_process, rank, world_size
        from fico_registry.training.sharding import check_world

        self.model, self.out, self.opts, self.device = model, Path(out), opts, device
        self.main, self.world, self.rank = is_main_process(), world_size(), rank()
        check_world(opts.batch_size, self.world)
        self.cfg, self.config_name = resolve_model_config(model, opts.config)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)

    def vse_checkpoint(self, saved_epoch: int, model: Any, state: LoopState, namespace: Any, *, eiters: bool = True
                       ) -> dict[str, Any]:  # fmt: skip
        """The layout VSE++'s descendants (SCAN, VSRN, ADV) save, {epoch, model, best_rsum, opt(, Eiters)}, plus
        `fico_resume` (optimizer, loss scaler, history, best epoch, steps), which the original loaders ignore."""
        checkpoint: dict[str, Any] = {"epoch": saved_epoch, "model": model, "best_rsum": state.best, "opt": namespace}
        if eiters:
            checkpoint["Eiters"] = state.iters
        checkpoint["fico_resume"] = {
            "optimizer": self.optimizer.state_dict(), "history": state.history, "best_epoch": state.best_epoch,
            "Eiters": state.iters, "scaler": None if self.scaler is None else self.scaler.state_dict(),
        }  # fmt: skip
        return checkpoint

    def vse_loop_state(self, checkpoint: Mapping[str, Any], start_epoch: int | None = None) -> LoopState:
        """The inverse of `vse_checkpoint` (the weights are the recipe's to load): optimizer and loss scaler
        restored, the loop state to continue from. `start_epoch`: the checkpoint's `epoch` unless given."""
        extra = checkpoint.get("fico_resume") or {}
        restore_optimizers(extra, self.optimizer, self.scaler)
        return LoopState(
            int(checkpoint["epoch"]) if start_epoch is None else start_epoch,
            float(checkpoint.get("best_rsum", 0.0)),
            extra.get("best_epoch"),
            int(extra.get("Eiters", checkpoint.get("Eiters", 0))),
            list(extra.get("history", [])),
        )

    # hooks ------------------------------------------------------------------------------------------
    def restore(self) -> LoopState | None:
        """The state saved by an earlier run in `out` (weights, optimizers loaded), or None to start afresh."""
        raise NotImplementedError

    def learning_rate(self, epoch: int) -> float:
        raise NotImplementedError

    def n_samples(self) -> int:
        """How many samples one epoch's order permutes (captions or images)."""
        raise NotImplementedError

    def begin_epoch(self, epoch: int, order: np.ndarray) -> Sequence[Any]:
        """Train mode and per-epoch state; returns this rank's batches of the epoch's sample order."""
        raise NotImplementedError

    def step(self, batch: Any, epoch: int, step: int) -> float:
        """One optimisation step on `batch`; returns its loss."""
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        """After the epoch's steps, before validation (e.g. DADH's discrete code update)."""

    def validate(self, epoch: int) -> Validation | None:
        """Validation of this epoch's model, or None when this epoch is not validated."""
        raise NotImplementedError

    def checkpoint(self, epoch: int, state: LoopState) -> dict[str, Any]:
        """What `checkpointer` saves after `epoch`: the original layout plus resume-only entries."""
        raise NotImplementedError

    def after_save(self, epoch: int, state: LoopState) -> None:
        """Rank 0, after the checkpoint: files of the recipe's own (e.g. a separate resume file)."""

    def result(self) -> dict[str, Any]:
        """The recipe's entries of the run record (config, objective, side files)."""
        return {}


def recipe_trainer(
    recipe: Callable[..., EpochRecipe], options: type[RecipeOptions], doc: str
) -> Callable[..., dict[str, Any]]:
    """The `train(*, model, train, val, out, options, device, progress)` function `fico train` calls (TrainerSpec's
    factory), for a recipe class built as `recipe(model=, train=, val=, out=, opts=, device=, progress=)`."""

    def train(
        *, model: str, train: Any, val: Any, out: Path, options: Mapping[str, Any], device: str = "cpu",
        progress: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        opts = options_type.from_dict(options)
        built = recipe(model=model, train=train, val=val, out=Path(out), opts=opts, device=device, progress=progress)
        return run_epochs(built, progress=progress)

    options_type = options
    train.__doc__ = doc
    return train


def run_epochs(recipe: EpochRecipe, *, progress: bool) -> dict[str, Any]:
    """Train `recipe` from where its run folder stands to `opts.epochs`; returns the run record's entries."""
    from fico_registry.runtime import distributed as _dist

    opts, model = recipe.opts, recipe.model
    state = (recipe.restore() if opts.resume else None) or LoopState(best=recipe.initial_best)
    bar = TrainingProgress(progress, model)
    if state.start_epoch >= opts.epochs and recipe.main:
        bar.log(
            f"{model}: {recipe.out} already holds {state.start_epoch} epochs (asked for {opts.epochs}); "
            "nothing to train"
        )
    epochs_run = 0
    for epoch in range(state.start_epoch, opts.epochs):
        _run_epoch(recipe, state, epoch, bar)
        epochs_run += 1
        if recipe.world > 1:
            _dist.barrier()  # rank 0's files exist before any rank goes on (or returns their paths)
    checkpointer = recipe.checkpointer
    best_path = checkpointer.best_path if checkpointer.best_path.exists() else checkpointer.last_path
    return {
        "checkpoint": str(best_path),
        "last_checkpoint": str(checkpointer.last_path),
        "best_epoch": state.best_epoch,
        recipe.best_key: state.best,
        "epochs_run": epochs_run,
        "history": state.history,
        **recipe.result(),
    }


def _run_epoch(recipe: EpochRecipe, state: LoopState, epoch: int, bar: TrainingProgress) -> None:
    from fico_registry.runtime import distributed as _dist

    opts = recipe.opts
    started = time.perf_counter()
    lr = recipe.learning_rate(epoch)
    for group in recipe.optimizer.param_groups:
        group["lr"] = lr
    seed_everything(epoch_seed(opts.seed, epoch, recipe.rank if recipe.per_rank_seed else 0))
    order = np.random.default_rng([opts.seed, epoch]).permutation(recipe.n_samples())  # the same on every rank
    batches = recipe.begin_epoch(epoch, order)
    total = 0.0
    with bar.epoch(epoch, opts.epochs, len(batches)) as advance:
        for step, batch in enumerate(batches):
            value = recipe.step(batch, epoch, step)
            state.iters += 1
            total += value
            advance(1, loss=value, lr=lr)
    if recipe.loss_per_rank and recipe.world > 1:
        summed = torch.tensor([total], dtype=torch.float64, device=recipe.device)
        torch.distributed.all_reduce(summed)
        total = float(summed) / recipe.world
    recipe.end_epoch(epoch)
    validation = recipe.validate(epoch)
    is_best = validation is not None and bool(_dist.broadcast_object(validation.score > state.best))  # rank 0 decides
    if is_best and validation is not None:  # is_best implies a validation
        state.best, state.best_epoch = validation.score, epoch + recipe.first_epoch
    seconds = time.perf_counter() - started
    row: dict[str, Any] = {"epoch": epoch + recipe.first_epoch, "loss": total / max(len(batches), 1), "lr": lr}
    row["seconds"] = round(seconds, 2)
    if validation is not None:
        row.update(validation.entries)
    state.history.append(row)
    if recipe.main:
        recipe.checkpointer.save(epoch, recipe.checkpoint(epoch, state), is_best=is_best)
        recipe.after_save(epoch, state)
        score = "" if validation is None else "  " + recipe.score_format.format(validation.score)
        best = "  (best)" if is_best else ""
        loss = f"loss {row['loss']:.4f}"
        bar.log(f"{recipe.model} epoch {epoch + 1}/{opts.epochs}: {loss}{score}{best}  [{seconds:.1f}s]")
