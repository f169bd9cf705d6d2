"""The plugin API boundary: every public name is documented, and bundled plugins use nothing else."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = (ROOT / "docs" / "plugin-api.md").read_text()
# what a plugin may import: the plugin API (and its submodules), the typed errors, top-level names
ALLOWED = re.compile(r"^fico_registry(\.plugin_api(\.[a-z_]+)*|\.errors)?$")


@pytest.mark.parametrize("module", ["fico_registry.plugin_api", "fico_registry.plugin_api.training"])
def test_every_public_name_is_documented(module):
    names = importlib.import_module(module).__all__
    missing = [name for name in names if f"`{name}`" not in API_PAGE]
    assert not missing, f"docs/plugin-api.md does not document {missing} from {module}"


def test_every_lazy_helper_resolves():
    import fico_registry.plugin_api as api

    for name in api.__all__:
        assert getattr(api, name) is not None, name


def _core_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m == "fico_registry" or m.startswith("fico_registry.")]
    return found


def test_bundled_plugins_import_only_the_plugin_api():
    sources = sorted(ROOT.glob("plugins/*/src/**/*.py"))
    assert sources, "no plugin sources found"
    leaks = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sources
        for line, module in _core_imports(path)
        if not ALLOWED.match(module)
    ]
    assert not leaks, "plugins must import only fico_registry.plugin_api / .errors / top-level names:\n" + "\n".join(
        leaks
    )
