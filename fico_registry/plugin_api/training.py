"""The training kit for recipe plugins (`fico_trainers`): the shared epoch loop, losses, checkpoints,
seeding, precision, torchrun.

Importing this module imports torch: use it from a recipe's train module, never from plugin.py.
`loop` is the shared epoch loop (subclass `loop.EpochRecipe`, build `train` with
`loop.recipe_trainer`); `code_validation` holds the hashing recipes' validation helpers;
`rank_testing` is the harness for a recipe's tests (synthetic splits, gloo ranks on CPU).
"""

from __future__ import annotations

from fico_registry.runtime.distributed import barrier, broadcast_object, is_main_process, rank, world_size
from fico_registry.training import code_validation, loop, rank_testing
from fico_registry.training.common import (
    Checkpointer,
    TrainingProgress,
    all_gather_with_grad,
    atomic_save,
    autocast,
    grad_scaler,
    seed_everything,
    shard,
    validation_rsum,
)
from fico_registry.training.loop import resolve_model_config
from fico_registry.training.losses import vse_hinge_loss
from fico_registry.training.sharding import (
    GlobalBatchNorm1d,
    check_same_on_every_rank,
    check_world,
    distributed,
    globalise_batchnorms,
    in_batch_order,
    quiet,
)

__all__ = [
    "Checkpointer",
    "GlobalBatchNorm1d",
    "TrainingProgress",
    "all_gather_with_grad",
    "atomic_save",
    "autocast",
    "barrier",
    "broadcast_object",
    "check_same_on_every_rank",
    "check_world",
    "code_validation",
    "distributed",
    "globalise_batchnorms",
    "grad_scaler",
    "in_batch_order",
    "is_main_process",
    "loop",
    "quiet",
    "rank",
    "rank_testing",
    "resolve_model_config",
    "seed_everything",
    "shard",
    "validation_rsum",
    "vse_hinge_loss",
    "world_size",
]
