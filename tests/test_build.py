"""The core builds as an sdist and a wheel (`python -m build`, which builds the wheel from the sdist),
and both carry the package data: leaderboard templates and static files, the `fico plugin new`
templates, and py.typed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DATA = (
    "fico_registry/py.typed",
    "fico_registry/leaderboard/static/leaderboard.css",
    "fico_registry/leaderboard/static/leaderboard.js",
    "fico_registry/leaderboard/templates/base.html.j2",
    "fico_registry/leaderboard/templates/corpus.html.j2",
    "fico_registry/leaderboard/templates/index.html.j2",
    "fico_registry/leaderboard/templates/_rejected.html.j2",
    *(
        f"fico_registry/cli/plugin_template/{name}.j2"
        for name in ("pyproject.toml", "README.md", "__init__.py", "plugin.py", "model.py", "test_plugin.py")
    ),
)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="needs the `build` package (pip install build; in the test extras)")
    source = tmp_path_factory.mktemp("source")
    # a copy, so the build leaves nothing (egg-info, build/) in the checkout
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "fico_registry", source / "fico_registry", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    out = source / "dist"
    # --no-isolation: use this environment's setuptools instead of downloading one
    run = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def _source_files() -> set[str]:
    package = REPO / "fico_registry"
    return {p.relative_to(REPO).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}


def test_wheel_holds_every_module_and_the_package_data(dist):
    (wheel,) = dist.glob("fico_registry-*-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _source_files() <= names, sorted(_source_files() - names)[:10]
    assert set(PACKAGE_DATA) <= names, sorted(set(PACKAGE_DATA) - names)
    info = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(info).decode()
    assert "Name: fico-registry" in metadata and "Requires-Python: >=3.10" in metadata
    entry_points = zipfile.ZipFile(wheel).read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "fico = fico_registry.cli:main" in entry_points


def test_sdist_holds_the_sources_and_the_package_data(dist):
    (sdist,) = dist.glob("fico_registry-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md"} <= names
    assert _source_files() <= names, sorted(_source_files() - names)[:10]
    assert set(PACKAGE_DATA) <= names
