"""The plugin API boundary: every public name is documented, and bundled plugins use nothing else."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = (ROOT / "docs" / "plugin-api.md").read_text()
# what a plugin may import: the plugin API (and its submodules), the typed errors, top-level names
ALLOWED = re.compile(r"^fico_registry(\.plugin_api(\.[a-z_]+)*|\.errors)?$")
# the names `from fico_registry import ...` may take (else `from fico_registry import data` would pass)
TOP_LEVEL = set(importlib.import_module("fico_registry").__all__)
# what the bundled plugins' tests may import beyond that: (test file, module) -> why. Keep it short: these
# tests are what third-party authors copy.
TEST_ALLOWED = {
    # these tests check the core's feature-pipeline runner (what evaluation and `fico train` call) over this
    # plugin's pipelines: a test of the core that needs the pipelines, so it lives beside them
    ("plugins/fico-features/tests/test_vgg19_fc7.py", "fico_registry.models.pipelines"),
    ("plugins/fico-features/tests/test_doc2vec.py", "fico_registry.models.pipelines"),
}


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
            if node.module == "fico_registry":
                # a top-level name, or a submodule reached through the package (`import data` from it)
                modules = [node.module + ("" if a.name in TOP_LEVEL else f".{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m == "fico_registry" or m.startswith("fico_registry.")]
    return found


def _leaks(pattern: str, allowed: Collection[tuple[str, str]] = ()) -> list[str]:
    """`path:line: module` for each import of the core outside the plugin API in the files under `pattern`."""
    sources = sorted(ROOT.glob(pattern))
    assert sources, f"no files match {pattern}"
    found = [
        (path.relative_to(ROOT).as_posix(), line, module) for path in sources for line, module in _core_imports(path)
    ]
    return [
        f"{path}:{line}: {module}"
        for path, line, module in found
        if not ALLOWED.match(module) and (path, module) not in allowed
    ]


def test_bundled_plugins_import_only_the_plugin_api():
    leaks = _leaks("plugins/*/src/**/*.py")
    assert not leaks, "plugins must import only fico_registry.plugin_api / .errors / top-level names:\n" + "\n".join(
        leaks
    )


def test_bundled_plugin_tests_import_only_the_plugin_api():
    """The bundled plugins' tests are examples too: the same rule, with the few exceptions in TEST_ALLOWED."""
    leaks = _leaks("plugins/*/tests/**/*.py", TEST_ALLOWED)
    assert not leaks, "plugin tests must import only the plugin API (or add a commented TEST_ALLOWED entry):\n" + (
        "\n".join(leaks)
    )
