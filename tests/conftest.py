"""Shared test settings: offline, quiet, and a throw-away FICO_HOME."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("FICO_NO_PROGRESS", "1")

import pytest


@pytest.fixture(autouse=True)
def _fico_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FICO_HOME", str(tmp_path_factory.getbasetemp() / "fico-home"))
