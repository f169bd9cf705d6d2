"""fico_registry.plugin_api.fixtures: the shared conftest pieces of the plugin test suites."""

from __future__ import annotations

import os
import subprocess
import sys

from fico_registry.plugin_api import fixtures


def test_offline_environment_fills_defaults_and_keeps_the_callers(monkeypatch):
    for key in fixtures.OFFLINE_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    fixtures.offline_environment()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "4"


def test_a_conftest_that_imports_the_fixtures_gets_them(tmp_path):
    (tmp_path / "conftest.py").write_text(
        "from fico_registry.plugin_api.fixtures import isolated_fico_home  # noqa: F401\n"
    )
    (tmp_path / "test_home.py").write_text(
        "import os, torch\n"
        "def test_home(tmp_path):\n"
        "    assert os.environ['FICO_HOME'] == str(tmp_path / 'fico-home')\n"
        "    assert torch.get_num_threads() == 1\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_listing_in_a_fresh_process_reports_names_and_heavy_imports():
    report = fixtures.list_models_in_fresh_process("fico_scan.plugin", plugin="scan", distribution="fico-scan")
    assert report["names"] == ["scan", "scan-ensemble"] and report["n"] == 2
    assert report["heavy"] == [] and report["seconds"] > 0
    heavy = fixtures.list_models_in_fresh_process("json, torch", plugin="scan", distribution="fico-scan")
    assert "torch" in heavy["heavy"]


def test_evaluate_on_synthetic_returns_the_report(tmp_path):
    report = fixtures.evaluate_on_synthetic("reference-dual", tmp_path / "data", n_images=6, device="cpu", cache=False)
    assert report["model"]["name"] == "reference-dual" and report["model"]["config_name"] == "tiny"
    assert report["corpus"]["name"] == "synthetic" and report["corpus"]["n_images"] == 6
    assert report["settings"]["device"] == "cpu"
    for direction in ("i2t", "t2i"):
        assert 0.0 <= report["instance"][direction]["R@1"] <= 1.0
