"""Discovery through real entry points: broken plugins are reported and skipped, the rest list.

Each case installs a fake distribution (a *.dist-info folder with entry_points.txt plus its
module) on PYTHONPATH and runs the real `fico` command in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOOD = """
from fico_registry import ModelSpec, hookimpl

@hookimpl
def fico_models(register):
    register(ModelSpec(name="fake-good", family="vlp", output="continuous", dim=8, measure="cosine",
                       image_input="pixels", text_input="text", factory="fake_good_model:build",
                       configs={"default": {}, "tiny": {}}))
"""
IMPORT_ERROR = "raise ImportError('fake_broken needs a package that is not installed')\n"
MALFORMED = """
from fico_registry import hookimpl

@hookimpl
def fico_models(register):
    register({"name": "not-a-spec"})
"""
INVALID_SPEC = """
from fico_registry import ModelSpec, hookimpl

@hookimpl
def fico_models(register):
    register(ModelSpec(name="Bad Name!", family="vlp", output="continuous", dim=8, measure="cosine",
                       image_input="pixels", text_input="text", factory="x:y", configs={"default": {}}))
"""
# the good plugin's card under a name the core already registers
DUPLICATE = GOOD.replace('name="fake-good"', 'name="reference-dual"')


def make_dist(root: Path, dist: str, module: str, source: str, entry: str | None = None) -> None:
    """A minimal installed distribution: METADATA + entry_points.txt + one module."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[fico_registry]\n{entry or dist} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


def run_fico(args: list[str], path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FICO_")}
    environ["PYTHONPATH"] = str(path) + os.pathsep + environ.get("PYTHONPATH", "")
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fico_registry", *args], capture_output=True, text=True, env=environ, timeout=120
    )


@pytest.fixture(scope="module")
def fake_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    make_dist(root, "fake-good", "fake_good_plugin", GOOD)
    (root / "fake_good_model.py").write_text("def build(**kwargs):\n    raise NotImplementedError\n")
    make_dist(root, "fake-broken", "fake_broken_plugin", IMPORT_ERROR)
    make_dist(root, "fake-malformed", "fake_malformed_plugin", MALFORMED)
    make_dist(root, "fake-invalid", "fake_invalid_plugin", INVALID_SPEC)
    make_dist(root, "fake-duplicate", "fake_duplicate_plugin", DUPLICATE)
    return root


def test_broken_plugins_are_reported_and_the_rest_still_list(fake_site: Path) -> None:
    listed = run_fico(["models", "--json"], fake_site)
    assert listed.returncode == 0, listed.stderr
    names = {m["name"] for m in json.loads(listed.stdout)}
    assert {"fake-good", "reference-dual", "reference-hash"} <= names
    assert "not-a-spec" not in names
    # a name two distributions register is listed for both, each flagged with the other
    refs = {m["distribution"]: m["name_conflicts"] for m in json.loads(listed.stdout) if m["name"] == "reference-dual"}
    assert refs == {"fico-registry": ["fake-duplicate"], "fake-duplicate": ["fico-registry"]}

    report = run_fico(["plugins", "--json"], fake_site)
    assert report.returncode == 0, report.stderr
    by_name = {p["name"]: p for p in json.loads(report.stdout)}
    assert by_name["fake-good"]["ok"] and by_name["fake-good"]["models"] == ["fake-good"]
    for name, words in {
        "fake-broken": ["import", "ImportError", "not installed"],
        "fake-malformed": ["register() expects a ModelSpec", "dict"],
        "fake-invalid": ["Bad Name!"],
        "fake-duplicate": ["also registered by fico-registry", "fake-duplicate:reference-dual"],
    }.items():
        info = by_name[name]
        assert not info["ok"], name
        problem = info["problems"][0]
        assert problem["distribution"] == name and problem["version"] == "0.1"
        text = json.dumps(problem)
        for word in words:
            assert word in text, (name, word, text)
    builtin = by_name["builtins"]
    assert not builtin["ok"] and "also registered by fake-duplicate" in json.dumps(builtin["problems"])


def test_problems_are_noted_in_the_table_output(fake_site: Path) -> None:
    out = run_fico(["models"], fake_site)
    assert out.returncode == 0
    assert "plugin problem(s)" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_strict_mode_makes_a_broken_plugin_fatal(fake_site: Path) -> None:
    out = run_fico(["models"], fake_site, FICO_STRICT_PLUGINS="1")
    assert out.returncode != 0
    assert "fake-broken" in out.stderr or "fake_broken" in out.stderr
    assert "Traceback" not in out.stderr  # one clear line, not a traceback
    debug = run_fico(["--debug", "models"], fake_site, FICO_STRICT_PLUGINS="1")
    assert "Traceback" in debug.stderr


def test_allow_list_loads_only_named_plugins(fake_site: Path) -> None:
    out = run_fico(["plugins", "--json"], fake_site, FICO_LOAD_PLUGINS="fake-good")
    names = {p["name"] for p in json.loads(out.stdout)}
    assert "fake-good" in names
    assert not names & {"fake-broken", "fake-malformed", "fake-invalid", "fake-duplicate"}
    # built-ins always load; other installed plugins are filtered out too
    assert "builtins" in names
    assert all(p["builtin"] or p["name"] == "fake-good" for p in json.loads(out.stdout))


def test_trace_logs_hook_calls(fake_site: Path) -> None:
    out = run_fico(["models", "--json"], fake_site, FICO_TRACE_PLUGINS="1", FICO_LOAD_PLUGINS="fake-good")
    assert "[fico trace]" in out.stderr
    assert "fake-good" in out.stderr and "fico_models" in out.stderr


def test_unknown_model_suggests_close_matches() -> None:
    from fico_registry import UnknownModelError, get_model_spec

    with pytest.raises(UnknownModelError) as err:
        get_model_spec("reference-duel")
    assert "reference-dual" in str(err.value)


LAZY_CHECK = """
import sys
{action}
heavy = [m for m in ("torch", "transformers", "open_clip", "timm", "torchvision", "faiss", "gensim", "matplotlib")
         if m in sys.modules]
# plugins import their small card modules; never the model code their factories live in
import fico_registry
factories = {s.factory.split(":")[0] for s in fico_registry.list_models()}
model_code = sorted(factories & set(sys.modules))
print(heavy, model_code)
assert not heavy and not model_code, (heavy, model_code)
"""


@pytest.mark.parametrize(
    "action",
    [
        "import fico_registry",
        "import fico_registry; fico_registry.list_models(); fico_registry.plugins(); fico_registry.list_datasets()",
        "import fico_registry; "
        "fico_registry.get_model_spec('scan') if 'scan' in [m.name for m in fico_registry.list_models()] else None",
        "from fico_registry.cli.main import main\ntry:\n    main(['models', '--json'])\nexcept SystemExit:\n    pass",
        "from fico_registry.cli.main import main\ntry:\n    main(['info', 'reference-dual'])\n"
        "except SystemExit:\n    pass",
    ],
    ids=["import", "list", "spec", "cli-models", "cli-info"],
)
def test_listing_imports_no_heavy_module(action: str) -> None:
    code = LAZY_CHECK.replace("{action}", action)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
