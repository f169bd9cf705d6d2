"""Hook specifications. A plugin implements any of these with the `hookimpl` marker.

Registration is by callback, as in simonw/llm: the hook receives `register` and calls it once
per spec, so one plugin can register many things and the registry can tell who sent what.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "fico_registry"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fico_models(register: Callable) -> None:
    """Register models: call ``register(ModelSpec(...))`` for each one."""


@hookspec
def fico_datasets(register: Callable) -> None:
    """Register datasets: call ``register(DatasetSpec(...))`` for each one."""


@hookspec
def fico_feature_pipelines(register: Callable) -> None:
    """Register feature pipelines (e.g. VGG-19 fc7, Doc2Vec): call ``register(FeatureSpec(...))``."""


@hookspec
def fico_trainers(register: Callable) -> None:
    """Register training recipes: call ``register(TrainerSpec(...))`` for each one."""


@hookspec
def fico_commands(cli: object) -> None:
    """Add sub-commands to the `fico` command line: ``cli`` is the root click group."""
