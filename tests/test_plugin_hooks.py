"""trainer_hook: a ready-made fico_trainers hook that registers the given recipe cards."""

from __future__ import annotations

import types

import pluggy
import pytest

from fico_registry.errors import SpecError
from fico_registry.plugin_api import TrainerSpec, hookspecs, trainer_hook
from fico_registry.plugin_api.checks import hook_mistakes

RECIPES = (
    TrainerSpec(model="toy-a", factory="toy.train:train", defaults={"epochs": 3}),
    TrainerSpec(model="toy-b", factory="toy.train:train", description="second"),
)


def _plugin(**hooks) -> types.ModuleType:
    module = types.ModuleType("toy_plugin")
    module.__dict__.update(hooks)
    return module


def test_registers_every_recipe_in_order_through_pluggy():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(_plugin(fico_trainers=trainer_hook(*RECIPES)))
    seen: list[TrainerSpec] = []
    pm.hook.fico_trainers(register=seen.append)
    assert seen == list(RECIPES)


def test_the_hook_is_marked_so_the_mistake_check_is_quiet():
    assert hook_mistakes(_plugin(fico_trainers=trainer_hook(RECIPES[0]))) == []


@pytest.mark.parametrize("bad", [(), ({"model": "toy"},), (RECIPES[0], "toy.train:train")])
def test_refuses_anything_but_trainer_cards(bad):
    with pytest.raises(SpecError, match="TrainerSpec"):
        trainer_hook(*bad)
