"""Registration mistakes the registry reports instead of silently ignoring.

Everything here runs while models are listed, so nothing imports a plugin's model code: hook names
are read off the plugin module, and factory paths are looked up with the import system's finders
(the module file must exist) without importing the module or its parent packages.
"""

from __future__ import annotations

import difflib
import os
import sys
import types
from typing import Any

from fico_registry.plugin_api import hookspecs

# Modules that make every `fico` command slow when a plugin.py imports them at the top
# (torch alone is 1-5 s); only top-level names newly imported by the plugin count.
HEAVY_MODULES = frozenset(
    {
        "torch",
        "torchvision",
        "transformers",
        "open_clip",
        "timm",
        "tensorflow",
        "jax",
        "faiss",
        "gensim",
        "cv2",
        "lavis",
        "matplotlib",
        "sklearn",
    }
)
SLOW_IMPORT_MS = 100.0  # default threshold; FICO_SLOW_PLUGIN_MS overrides it
_IMPL_MARK = f"{hookspecs.PROJECT}_impl"  # the attribute pluggy's HookimplMarker sets on a function


def hook_names() -> list[str]:
    """Every hook a plugin may implement, as declared in fico_registry.plugin_api.hookspecs."""
    return sorted(
        name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec")
    )


def slow_import_ms() -> float:
    try:
        return float(os.environ.get("FICO_SLOW_PLUGIN_MS", SLOW_IMPORT_MS))
    except ValueError:
        return SLOW_IMPORT_MS


def hook_mistakes(plugin: Any) -> list[str]:
    """Hook implementations that will never be called: unknown names and missing @hookimpl markers."""
    known = hook_names()
    own_module = plugin.__name__ if isinstance(plugin, types.ModuleType) else None
    mistakes = []
    for attr in sorted(dir(plugin)):
        try:
            obj = getattr(plugin, attr)
        except Exception:  # a property that raises is not a hook
            continue
        if not callable(obj) or isinstance(obj, type):
            continue
        marked = hasattr(obj, _IMPL_MARK)
        # an unmarked fico_* function counts only when the plugin defines it (not an imported helper)
        defined_here = own_module is not None and getattr(obj, "__module__", None) == own_module
        if not (marked or (defined_here and attr.startswith("fico_"))):
            continue
        if attr not in known:
            close = difflib.get_close_matches(attr, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"hooks are: {', '.join(known)}"
            mistakes.append(f"unknown hook {attr!r} is never called; {hint}")
        elif not marked:
            mistakes.append(f"{attr} is not decorated with @hookimpl, so it is never called")
    return mistakes


def heavy_imports(before: set[str], after: set[str]) -> list[str]:
    """Heavy top-level modules that appeared in sys.modules between two snapshots."""
    return sorted(name for name in after - before if "." not in name and name in HEAVY_MODULES)


def missing_module(path: str) -> str | None:
    """Why the module of a "module:attr" path cannot be found, or None when its file exists.

    Walks the dotted name with sys.meta_path finders (what `import` uses, editable installs
    included) but never executes a module: a package's __init__ may import torch.
    """
    module_name = path.partition(":")[0]
    search: list[str] | None = None
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        loaded = sys.modules.get(name)
        if loaded is not None:
            search = getattr(loaded, "__path__", None)
        else:
            spec = _find_spec(name, search)
            if spec is None:
                return f"no module named {name!r}"
            search = spec.submodule_search_locations
        if depth < len(parts) and search is None:
            return f"{name!r} is a module, not a package, so it has no {parts[depth]!r}"
    return None


def _find_spec(name: str, search: list[str] | None) -> Any:
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, search)
        except (ImportError, ValueError, AttributeError):
            continue
        if spec is not None:
            return spec
    return None


def factory_path(spec: Any) -> str | None:
    """The lazy import path a card carries (factory for models, features, trainers; loader for datasets)."""
    return getattr(spec, "factory", None) or getattr(spec, "loader", None)
