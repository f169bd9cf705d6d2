"""Distribution-level conformance checks: check_plugin, name provenance, and one-line pytest suites.

Re-exported by fico_registry.plugin_api.testing; import them from there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from types import FrameType
from typing import Any

from fico_registry.plugin_api import checks as plugin_checks
from fico_registry.plugin_api.cards import DatasetSpec, FeatureSpec, ModelSpec, TrainerSpec
from fico_registry.plugin_api.registry import PluginInfo, Registry, _normalise, get_registry

MAX_IMPORT_MS = 500.0  # check_plugin's limit for importing plugin.py in a fresh interpreter (cards only: ~1-10 ms)

_IMPORT_PROBE = """
import importlib, json, sys, time
import fico_registry
before = set(sys.modules)
started = time.perf_counter()
importlib.import_module(sys.argv[1])
ms = (time.perf_counter() - started) * 1e3
print(json.dumps({"ms": ms, "modules": sorted(set(sys.modules) - before)}))
"""


def _plugins(registry: Registry, distribution: str) -> list[PluginInfo]:
    infos = registry.plugins_of(distribution)
    installed = sorted({i.distribution or i.name for i in registry.infos.values() if not i.builtin})
    assert infos, (
        f"no installed plugin or distribution is called {distribution!r} "
        f"(installed: {', '.join(installed) or 'none'}); "
        "install it (pip install -e .) and check it declares an entry point in the 'fico_registry' group"
    )
    return infos


def import_cost(module: str) -> tuple[float, list[str]]:
    """Milliseconds to import `module` in a fresh interpreter (after fico_registry), and the heavy modules it loads."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, module], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert out.returncode == 0, f"importing {module} in a fresh interpreter failed:\n{out.stderr[-2000:]}"
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["ms"], plugin_checks.heavy_imports(set(), set(data["modules"]))


def check_plugin(distribution: str, *, max_import_ms: float = MAX_IMPORT_MS) -> dict[str, Any]:
    """Check one installed plugin distribution (or entry-point name) the way users will meet it.

    Checks: it is installed and loaded without problems (import, hooks, cards, name clashes),
    implements at least one known hook, its plugin module imports fast and without heavy modules
    (measured in a fresh interpreter), and every factory / loader it registers imports and is
    callable. Returns what was measured: {"plugins", "import_ms", "models", "datasets"}.
    """
    from fico_registry.plugin_api.registry import resolve_callable

    registry = get_registry()
    infos = _plugins(registry, distribution)
    summary: dict[str, Any] = {"plugins": [i.name for i in infos], "import_ms": {}, "models": [], "datasets": []}
    for info in infos:
        problems = "\n  ".join(str(p) for p in info.problems)
        assert not info.problems, f"{info.name} loaded with problems (see `fico plugins`):\n  {problems}"
        assert info.hooks, f"{info.name} implements no fico_registry hook"
        module = info.module.partition(":")[0]
        ms, heavy = import_cost(module)
        summary["import_ms"][info.name] = round(ms, 1)
        assert not heavy, (
            f"importing {module} imports {', '.join(heavy)}: every `fico` command pays for it. Import heavy "
            "modules inside the factory (model.py), not in plugin.py"
        )
        assert ms <= max_import_ms, (
            f"importing {module} takes {ms:.0f} ms (limit {max_import_ms:.0f} ms): keep plugin.py to the cards"
        )
        cards: list[ModelSpec | DatasetSpec | FeatureSpec | TrainerSpec] = [
            *(registry.model(f"{_qualifier(info)}:{m}") for m in info.models),
            *(registry.dataset(f"{_qualifier(info)}:{d}") for d in info.datasets),
            *(registry.feature_pipelines[f] for f in info.feature_pipelines),
            *(registry.trainers[t] for t in info.trainers),
        ]
        for card in cards:
            path = plugin_checks.factory_path(card)
            assert path, f"{card.name}: the card has no factory or loader"
            target = resolve_callable(path)  # the model code may import torch here: that is what a check is for
            assert callable(target), f"{card.name}: {path} is {type(target).__name__}, not a callable"
        summary["models"] += info.models
        summary["datasets"] += info.datasets
    return summary


def _qualifier(info: PluginInfo) -> str:
    return info.distribution or info.name


def check_provenance(name: str, distribution: str | None) -> None:
    """The card `name` resolves to comes from `distribution`, and that plugin loaded without problems."""
    registry = get_registry()
    spec = registry.model(name)  # AmbiguousModelError when two distributions claim the name
    owner = registry.owner(spec)
    if distribution is not None:
        mine = _plugins(registry, distribution)
        assert owner in mine, (
            f"{name!r} resolves to the card registered by {spec.distribution or owner.name}, not by {distribution}: "
            f"another distribution registers this name, or the name is misspelled (use '{distribution}:NAME')"
        )
    problems = "\n  ".join(str(p) for p in owner.problems)
    assert not owner.problems, (
        f"{owner.name}, which registers {spec.name}, had problems (see `fico plugins`):\n  {problems}"
    )


def caller_distribution() -> str | None:
    """The plugin distribution whose project holds the calling test file, if any.

    The nearest pyproject.toml above the first caller outside fico_registry counts when it
    declares a `fico_registry` entry point (the core's own tests therefore infer nothing).
    """
    core = Path(__file__).resolve().parent
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_absolute() and core not in path.resolve().parents and path.suffix == ".py":
            return _project_distribution(path.resolve().parent)
        frame = frame.f_back
    return None


@lru_cache(maxsize=64)
def _project_distribution(folder: Path) -> str | None:
    if sys.version_info >= (3, 11):
        import tomllib

        return _pyproject_distribution(folder, tomllib.loads)
    return None  # Python 3.10: no tomllib, no inference (pass dist= explicitly)


def _pyproject_distribution(folder: Path, parse_toml: Callable[[str], dict[str, Any]]) -> str | None:
    for directory in (folder, *folder.parents[:4]):
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            try:
                project = parse_toml(pyproject.read_text()).get("project", {})
            except (OSError, ValueError):
                return None
            if "fico_registry" in project.get("entry-points", {}) and isinstance(project.get("name"), str):
                return _normalise(project["name"])
            return None
    return None


def plugin_tests(distribution: str, **check_model_options: Any) -> Any:
    """A pytest test function checking a whole distribution: `test_plugin = plugin_tests("fico-acme")`.

    One test case runs check_plugin(distribution), then one per model runs check_model on its
    tiny config (options such as atol= or image_batch= are passed on). Model names come from
    the installed plugin when the test file is collected.
    """
    import pytest

    from fico_registry.plugin_api.testing import check_model

    models = sorted({m for info in get_registry().plugins_of(distribution) for m in info.models})

    @pytest.mark.parametrize("case", ["plugin", *(f"model:{m}" for m in models)])
    def test_fico_plugin(case: str) -> None:
        if case == "plugin":
            check_plugin(distribution)
        else:
            check_model(f"{distribution}:{case.partition(':')[2]}", dist=distribution, **check_model_options)

    return test_fico_plugin
