"""`fico plugin new`: write a working plugin package (pyproject, plugin.py, model.py, tests, README).

The generated package installs and passes `fico check` and its own tests as written: the models
are random projections, small and deterministic, that an author replaces with the real network.
The files are the jinja2 templates in plugin_template/ (one per generated file; the three kinds
differ only in the card and the Encoder class). plugins/_template in this repository is their
output for `fico plugin new example` (a test keeps them identical).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fico_registry.errors import OptionError

# The generated package's files, as jinja2 templates shipped with the core (package data).
TEMPLATES = Path(__file__).parent / "plugin_template"

# The only core modules generated code imports: the plugin API and the conformance kit. Every
# template goes through these two names, so moving the API is a one-line change here.
API_MODULE = "fico_registry.plugin_api"
TESTING_MODULE = "fico_registry.plugin_api.testing"

KINDS = ("continuous", "binary", "similarity")
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_SUFFIX = {"continuous": "dual", "binary": "hash", "similarity": "xattn"}


@dataclass(frozen=True)
class PluginNames:
    """How one NAME spreads over a package: dist fico-NAME, package fico_NAME, entry point NAME."""

    entry_point: str
    distribution: str
    package: str
    model: str

    @classmethod
    def of(cls, name: str, kind: str) -> PluginNames:
        if not _NAME.match(name):
            raise OptionError(
                f"plugin name {name!r} must be lower-case letters and digits, words joined by '-' (e.g. acme)"
            )
        if kind not in KINDS:
            raise OptionError(f"--kind must be one of {', '.join(KINDS)}; got {kind!r}")
        entry = name.removeprefix("fico-") or name
        dist = f"fico-{entry}"
        return cls(entry, dist, dist.replace("-", "_"), f"{entry}-{_SUFFIX[kind]}")


def core_requirement() -> str:
    """The core dependency range a plugin declares: this minor series (the plugin API is stable within it)."""
    from fico_registry import __version__

    major, minor = (int(part) for part in __version__.split(".")[:2])
    return f"fico-registry>={major}.{minor},<{major}.{minor + 1}"


def render(name: str, kind: str = "continuous") -> dict[str, str]:
    """Relative path -> file content of the plugin package for NAME."""
    n = PluginNames.of(name, kind)
    fields = {
        "api": API_MODULE,
        "testing": TESTING_MODULE,
        "entry": n.entry_point,
        "dist": n.distribution,
        "package": n.package,
        "model": n.model,
        "kind": kind,
        "core": core_requirement(),
    }
    files = {
        "pyproject.toml": "pyproject.toml.j2",
        "README.md": "README.md.j2",
        f"src/{n.package}/__init__.py": "__init__.py.j2",
        f"src/{n.package}/plugin.py": "plugin.py.j2",
        f"src/{n.package}/model.py": "model.py.j2",
        f"tests/test_{n.package}.py": "test_plugin.py.j2",
    }
    env = _environment()
    return {path: env.get_template(template).render(fields) for path, template in files.items()}


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2  # only `fico plugin new` needs it

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=False,  # Python, TOML and Markdown source, not HTML
        undefined=jinja2.StrictUndefined,  # a misspelt field fails instead of writing an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def write_plugin(name: str, target: Path, kind: str = "continuous") -> list[Path]:
    """Write the package into `target` (a new or empty folder); returns the files written."""
    files = render(name, kind)
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OptionError(f"{target} already exists and is not empty: choose another folder (--path)")
    written = []
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
