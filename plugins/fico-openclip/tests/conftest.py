"""Offline hubs; torchvision importable. Tests import open_clip directly, as the reference."""

from fico_registry.plugin_api.fixtures import hub_offline, offline_environment, torchvision_importable  # noqa: F401

offline_environment()  # before any test module imports huggingface_hub: it reads these once, at import
