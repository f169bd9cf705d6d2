"""Registration mistakes are loud: name clashes, misspelled hooks, missing markers, slow or heavy
imports, factory paths that do not resolve, and FICO_DISABLE_PLUGINS.

Fake distributions (dist-info + module on PYTHONPATH) and the real `fico` command in subprocesses,
as in test_registry_plugins.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_registry_plugins import make_dist, run_fico

CARD = """
from fico_registry import ModelSpec, hookimpl

@hookimpl
def fico_models(register):
    register(ModelSpec(name="{name}", family="vlp", output="continuous", dim=8, measure="cosine",
                       image_input="pixels", text_input="text", factory="{factory}",
                       configs={{"default": {{}}, "tiny": {{}}}}, paper="test", license="MIT"))
"""
TINY_MODEL = """
import torch


class Encoder:
    dim = 8

    def encode_images(self, batch):
        rows = [[float(im.size[0]), float(im.size[1]), 1.0, 2.0, 3.0, 4.0, 5.0, {sign}6.0] for im in batch]
        return torch.nn.functional.normalize(torch.tensor(rows), dim=-1)

    def encode_texts(self, batch):
        rows = [[float(len(t)), float(t.count(" ")), 1.0, 2.0, 3.0, 4.0, 5.0, 6.0] for t in batch]
        return torch.nn.functional.normalize(torch.tensor(rows), dim=-1)


def build(*, spec, config, checkpoint, device):
    return Encoder()
"""
MISSPELLED = """
from fico_registry import ModelSpec, hookimpl

@hookimpl
def fico_model(register):
    raise AssertionError("never called")
"""
UNMARKED = """
from fico_registry import ModelSpec

def fico_models(register):
    raise AssertionError("never called")
"""
EMPTY = '"""A plugin module with no hooks at all."""\n'
HEAVY = "import lavis\n" + CARD.format(name="heavy-model", factory="victim_model:build")
SLOW = "import time\ntime.sleep(0.3)\n" + CARD.format(name="slow-model", factory="victim_model:build")
BAD_FACTORY = CARD.format(name="bad-factory", factory="fake_bad_factory.modle:build")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mistakes-site")
    make_dist(root, "fake-victim", "fake_victim_plugin", CARD.format(name="victim-model", factory="victim_model:build"))
    (root / "victim_model.py").write_text(TINY_MODEL.format(sign=""))
    impostor = CARD.format(name="victim-model", factory="impostor_model:build")
    make_dist(root, "fake-impostor", "fake_impostor_plugin", impostor)
    (root / "impostor_model.py").write_text(TINY_MODEL.format(sign="-"))
    make_dist(root, "fake-misspelled", "fake_misspelled_plugin", MISSPELLED)
    make_dist(root, "fake-unmarked", "fake_unmarked_plugin", UNMARKED)
    make_dist(root, "fake-empty", "fake_empty_plugin", EMPTY)
    make_dist(root, "fake-heavy", "fake_heavy_plugin", HEAVY)
    (root / "lavis.py").write_text("# stands in for a heavy library\n")
    make_dist(root, "fake-slow", "fake_slow_plugin", SLOW)
    make_dist(root, "fake-bad-factory", "fake_bad_factory_plugin", BAD_FACTORY)
    package = root / "fake_bad_factory"
    package.mkdir()
    (package / "__init__.py").write_text("raise AssertionError('the factory check must not import the package')\n")
    (package / "model.py").write_text("")
    return root


@pytest.fixture(scope="module")
def report(site: Path) -> dict[str, dict]:
    out = run_fico(["plugins", "--json"], site)
    assert out.returncode == 0, out.stderr
    return {p["name"]: p for p in json.loads(out.stdout)}


def _python(code: str, site: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FICO_")}
    environ["PYTHONPATH"] = str(site) + os.pathsep + environ.get("PYTHONPATH", "")
    environ.update(env)
    args = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(args, capture_output=True, text=True, env=environ, timeout=300)


def test_a_shared_model_name_is_flagged_on_both_distributions(report: dict, site: Path) -> None:
    for me, other in (("fake-victim", "fake-impostor"), ("fake-impostor", "fake-victim")):
        assert not report[me]["ok"]
        text = json.dumps(report[me]["problems"])
        assert f"also registered by {other}" in text and f"'{other}:victim-model'" in text, text
    listed = run_fico(["models", "--json"], site)
    clashes = {m["distribution"]: m["name_conflicts"] for m in json.loads(listed.stdout) if m["name"] == "victim-model"}
    assert clashes == {"fake-victim": ["fake-impostor"], "fake-impostor": ["fake-victim"]}
    table = run_fico(["models"], site, COLUMNS="400")
    assert "name also registered by fake-impostor" in table.stdout


def test_a_shared_name_is_refused_and_dist_colon_name_picks_one(site: Path) -> None:
    refused = run_fico(["info", "victim-model"], site)
    assert refused.returncode == 2
    assert "fake-impostor" in refused.stderr and "fake-victim" in refused.stderr
    assert "'fake-victim:victim-model'" in refused.stderr and "Traceback" not in refused.stderr
    chosen = run_fico(["info", "fake-victim:victim-model", "--json"], site)
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout)["factory"] == "victim_model:build"
    out = _python(
        """
        import fico_registry as fico
        from fico_registry.errors import AmbiguousModelError
        try:
            fico.load_model("victim-model", config="tiny")
            raise SystemExit("an ambiguous name loaded")
        except AmbiguousModelError as exc:
            assert sorted(exc.distributions) == ["fake-impostor", "fake-victim"], exc.distributions
        # by distribution, or by entry-point name: the victim's own card and factory
        victim = fico.load_model("fake-victim:victim-model", config="tiny")
        impostor = fico.load_model("fake-impostor:victim-model", config="tiny")
        assert victim.spec.factory == "victim_model:build" and impostor.spec.factory == "impostor_model:build"
        """,
        site,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_check_model_fails_for_a_clashing_or_foreign_card(site: Path) -> None:
    out = _python(
        """
        from fico_registry.errors import AmbiguousModelError
        from fico_registry.plugin_api.testing import check_model

        def fails(call):
            try:
                call()
            except (AssertionError, AmbiguousModelError) as exc:
                return str(exc).splitlines()[0]
            raise SystemExit("check_model passed")

        print(fails(lambda: check_model("victim-model", dist="fake-victim")))
        print(fails(lambda: check_model("fake-victim:victim-model", dist="fake-victim")))
        print(fails(lambda: check_model("fake-impostor:victim-model", dist="fake-victim")))
        """,
        site,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    ambiguous, problems, foreign = out.stdout.strip().splitlines()[-3:]
    assert "registered by 2 distributions" in ambiguous
    assert "had problems" in problems
    assert "not by fake-victim" in foreign


def test_check_model_passes_for_the_own_card_of_a_clean_plugin(site: Path) -> None:
    out = _python(
        """
        from fico_registry.plugin_api.testing import check_model
        check_model("victim-model", dist="fake-victim")
        """,
        site,
        FICO_DISABLE_PLUGINS="fake-impostor",
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_misspelled_hook_suggests_the_real_one(report: dict) -> None:
    info = report["fake-misspelled"]
    assert not info["ok"] and info["hooks"] == []
    text = json.dumps(info["problems"])
    assert "unknown hook 'fico_model'" in text and "did you mean fico_models?" in text
    assert "implements no hook" in text


def test_a_missing_hookimpl_marker_and_an_empty_plugin_are_problems(report: dict) -> None:
    unmarked = json.dumps(report["fake-unmarked"]["problems"])
    assert "fico_models is not decorated with @hookimpl" in unmarked
    assert not report["fake-empty"]["ok"]
    assert "implements no hook" in json.dumps(report["fake-empty"]["problems"])


def test_heavy_and_slow_imports_are_warnings_with_milliseconds(report: dict, site: Path) -> None:
    heavy = report["fake-heavy"]
    assert heavy["ok"] and heavy["models"] == ["heavy-model"]  # it works, but every command pays
    assert "imports lavis" in json.dumps(heavy["warnings"])
    slow = report["fake-slow"]
    assert slow["ok"] and slow["import_ms"] >= 300
    assert "ms (threshold 100 ms" in json.dumps(slow["warnings"])
    assert report["fake-victim"]["warnings"] == [] and isinstance(report["fake-victim"]["import_ms"], float)
    table = run_fico(["plugins"], site, COLUMNS="400")
    assert "warning: importing fake_slow_plugin takes" in table.stdout
    quiet = run_fico(["plugins", "--json"], site, FICO_SLOW_PLUGIN_MS="5000", FICO_LOAD_PLUGINS="fake-slow")
    assert next(p for p in json.loads(quiet.stdout) if p["name"] == "fake-slow")["warnings"] == []


def test_a_factory_path_that_does_not_resolve_is_a_problem_found_without_importing(report: dict) -> None:
    info = report["fake-bad-factory"]
    assert not info["ok"] and info["models"] == []
    text = json.dumps(info["problems"])
    assert "fake_bad_factory.modle:build" in text and "no module named 'fake_bad_factory.modle'" in text
    # the package's __init__ raises when imported: the check only looked the files up
    assert "must not import" not in text


def test_disable_plugins_skips_distributions_by_name(site: Path) -> None:
    out = run_fico(["plugins", "--json"], site, FICO_DISABLE_PLUGINS="fake-impostor, fake_misspelled")
    by_name = {p["name"]: p for p in json.loads(out.stdout)}
    assert "fake-impostor" not in by_name and "fake-misspelled" not in by_name
    assert by_name["fake-victim"]["ok"] and "builtins" in by_name
    info = run_fico(["info", "victim-model", "--json"], site, FICO_DISABLE_PLUGINS="fake-impostor")
    assert info.returncode == 0 and json.loads(info.stdout)["distribution"] == "fake-victim"


def test_strict_mode_ignores_warnings(site: Path) -> None:
    out = run_fico(["models", "--json"], site, FICO_STRICT_PLUGINS="1", FICO_LOAD_PLUGINS="fake-slow,fake-heavy")
    assert out.returncode == 0, out.stderr


def _dataset_plugin(name: str, description: str):
    import types

    from fico_registry import DatasetSpec, hookimpl

    module = types.ModuleType(name)

    @hookimpl
    def fico_datasets(register):
        register(DatasetSpec(name="shared-data", loader="fico_registry.data.synthetic:load", description=description))

    fico_datasets.__module__ = name
    module.fico_datasets = fico_datasets
    return module


def test_a_shared_dataset_name_is_refused_and_dist_colon_name_picks_one() -> None:
    from fico_registry.errors import AmbiguousDatasetError
    from fico_registry.plugin_api.registry import Registry

    registry = Registry(
        entry_points=False, plugins=[_dataset_plugin("plug-a", "A"), _dataset_plugin("plug-b", "B")], strict=False
    )
    with pytest.raises(AmbiguousDatasetError, match="plug-a, plug-b") as err:
        registry.dataset("shared-data")
    assert "'plug-a:shared-data' or 'plug-b:shared-data'" in str(err.value)
    assert registry.dataset("plug-b:shared-data").description == "B"
    assert registry.dataset("plug-a:shared-data").description == "A"
    assert registry.dataset("synthetic").name == "synthetic"  # the others are unaffected
    for plugin, other in (("plug-a", "plug-b"), ("plug-b", "plug-a")):
        assert f"dataset name 'shared-data' is also registered by {other}" in str(registry.infos[plugin].problems[0])
    assert registry.conflicts(registry.dataset("plug-a:shared-data")) == ["plug-b"]
