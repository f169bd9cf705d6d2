"""Registration only: one card per open_clip architecture, read from a JSON manifest (no torch)."""

from __future__ import annotations

from collections.abc import Callable

from fico_registry import hookimpl

from .catalog import all_specs


@hookimpl
def fico_models(register: Callable) -> None:
    for spec in all_specs():
        register(spec)
