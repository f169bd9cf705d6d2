"""docs/plugins.md documents every hook and every card field (as datasette tests its plugin hooks)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fico_registry.plugin_api.cards import DatasetSpec, ModelSpec
from fico_registry.plugin_api.checks import hook_names

PLUGINS_MD = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()


def test_the_hook_list_is_the_hookspecs_module() -> None:
    assert hook_names() == ["fico_commands", "fico_datasets", "fico_feature_pipelines", "fico_models", "fico_trainers"]


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook: str) -> None:
    assert f"`{hook}(" in PLUGINS_MD, f"docs/plugins.md does not document the hook {hook}: add it to the hooks table"


@pytest.mark.parametrize(
    "card, field",
    [(card.__name__, f.name) for card in (ModelSpec, DatasetSpec) for f in dataclasses.fields(card)],
)
def test_every_card_field_is_documented(card: str, field: str) -> None:
    section = PLUGINS_MD.split(f"`{card}`", 1)[-1]  # the table after the card's heading line
    table = section.split("\n\n", 2)[1] if "\n\n" in section else ""
    assert f"`{field}`" in table, f"docs/plugins.md: the {card} table does not document the field `{field}`"
