"""Ready-made hook implementations, so a plugin card states its recipes as data.

    from fico_registry.plugin_api import TrainerSpec, trainer_hook

    fico_trainers = trainer_hook(
        TrainerSpec(model="my-model", factory="my_plugin.train:train", defaults=TRAIN_DEFAULTS, paper_recipe="...")
    )

Like every card module this imports nothing heavy: the training code is named by `factory` and
imported only when `fico train` runs it.
"""

from __future__ import annotations

from collections.abc import Callable

from fico_registry.errors import SpecError
from fico_registry.plugin_api.cards import TrainerSpec
from fico_registry.plugin_api.hookspecs import hookimpl

Register = Callable[[TrainerSpec], None]


def trainer_hook(*trainers: TrainerSpec) -> Callable[[Register], None]:
    """A `fico_trainers` hook implementation that registers `trainers`, in order.

    Assign it to the name `fico_trainers` in the plugin module; it is marked with @hookimpl already.
    """
    if not trainers:
        raise SpecError("trainer_hook() needs at least one TrainerSpec")
    for trainer in trainers:
        if not isinstance(trainer, TrainerSpec):
            raise SpecError(f"trainer_hook() takes TrainerSpec cards, got {type(trainer).__name__}: {trainer!r:.80}")

    @hookimpl
    def fico_trainers(register: Register) -> None:
        for trainer in trainers:
            register(trainer)

    return fico_trainers
