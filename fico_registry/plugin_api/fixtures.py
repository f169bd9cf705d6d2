"""pytest fixtures every plugin test suite wants: offline hubs, an isolated $FICO_HOME, one thread.

In a plugin's tests/conftest.py (pytest registers fixtures a conftest imports):

    from fico_registry.plugin_api.fixtures import offline_environment

    offline_environment()  # first: huggingface_hub reads these variables once, at import

    from fico_registry.plugin_api.fixtures import isolated_fico_home  # noqa: F401  (autouse)

This module is for tests only (it imports pytest); plugin code never imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

OFFLINE_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def offline_environment() -> None:
    """No hub downloads and one OpenMP thread, unless the caller's environment says otherwise.

    Call it at the top of conftest.py, before anything imports huggingface_hub or torch.
    """
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline even when another test module imported huggingface_hub before the variables were set."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)


@pytest.fixture(autouse=True)
def isolated_fico_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$FICO_HOME in the test's temporary folder (no user checkpoint, vocabulary or cache leaks in),
    and torch on one thread (OMP_NUM_THREADS is too late when another suite imported torch first)."""
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("FICO_HOME", str(tmp_path / "fico-home"))


@pytest.fixture(autouse=True, scope="session")
def torchvision_importable() -> None:
    """Tests that import a reference library (transformers' image classes, open_clip) directly need
    torchvision importable first; fico_registry.plugin_api.compat makes it so."""
    from fico_registry.plugin_api.compat import ensure_torchvision

    ensure_torchvision()
