"""Module-level `__getattr__` for packages that expose heavy names without importing them up front."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_getattr(
    package: str,
    namespace: MutableMapping[str, Any],
    names: Mapping[str, str],
    modules: Mapping[str, str] | None = None,
) -> Callable[[str], Any]:
    """A `__getattr__` (PEP 562) for `package`: `names` maps an attribute to the module defining it,
    imported on first use and then cached in `namespace` (the package's globals()); `modules` maps an
    attribute to a module returned whole (`fico_registry.data` without an explicit import)."""

    def __getattr__(name: str) -> Any:
        if modules is not None and name in modules:
            return importlib.import_module(modules[name])
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
