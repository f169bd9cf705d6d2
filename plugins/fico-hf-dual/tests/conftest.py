import os

# Before anything imports huggingface_hub: it reads these once, at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch):
    """Offline even when another test module imported huggingface_hub first."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)


@pytest.fixture(autouse=True, scope="session")
def _torchvision_importable():
    """Tests import transformers' image classes directly (as the reference): make torchvision importable first."""
    from fico_registry.plugin_api.compat import ensure_torchvision

    ensure_torchvision()
