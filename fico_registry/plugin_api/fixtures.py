"""pytest fixtures every plugin test suite wants: offline hubs, an isolated $FICO_HOME, one thread,
and a check that listing models stays cheap.

In a plugin's tests/conftest.py (pytest registers fixtures a conftest imports):

    from fico_registry.plugin_api.fixtures import offline_environment

    offline_environment()  # first: huggingface_hub reads these variables once, at import

    from fico_registry.plugin_api.fixtures import isolated_fico_home  # noqa: F401  (autouse)

This module is for tests only (it imports pytest); plugin code never imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fico_registry.plugin_api.checks import HEAVY_MODULES

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


def list_models_in_fresh_process(module: str, *, plugin: str, distribution: str) -> dict[str, Any]:
    """Import a plugin's card module and list the registry in a new interpreter that loads only `plugin`
    (FICO_LOAD_PLUGINS), the way `fico models` starts: what a card module costs every command.

    Returns {"names": the distribution's model names, sorted; "n": how many; "seconds": import and
    listing; "heavy": the heavy modules (torch, transformers, ...) that got imported, [] when none}.
    """
    code = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        f"import {module}\n"
        "from fico_registry import list_models\n"
        f"names = sorted(s.name for s in list_models() if s.distribution == {distribution!r})\n"
        "seconds = time.perf_counter() - t\n"
        f"heavy = sorted(m for m in {sorted(HEAVY_MODULES)!r} if m in sys.modules)\n"
        "print(json.dumps({'names': names, 'n': len(names), 'seconds': seconds, 'heavy': heavy}))\n"
    )
    env = {**os.environ, "FICO_LOAD_PLUGINS": plugin}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def evaluate_on_synthetic(
    name: str,
    root: str | os.PathLike,
    *,
    config: str = "tiny",
    n_images: int = 12,
    seed: int = 0,
    device: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The whole path a user takes: load `name` (random weights of `config`), evaluate it on a small
    synthetic corpus written under `root`, and return the report as a dict. `device`, when given,
    is used for both; `options` go to `fico_registry.evaluate` (cache=False, batch_size=4, ...)."""
    from fico_registry import evaluate, load_model
    from fico_registry.data import synthetic

    corpus = synthetic(n_images=n_images, seed=seed, root=root)
    on: dict[str, Any] = {} if device is None else {"device": device}
    return evaluate(load_model(name, config=config, **on), corpus, **on, **options).to_dict()
