"""Registration only: four model cards, no torch / transformers imports."""

from __future__ import annotations

from collections.abc import Callable

from fico_registry import hookimpl

from .cards import all_specs


@hookimpl
def fico_models(register: Callable) -> None:
    for spec in all_specs():
        register(spec)
