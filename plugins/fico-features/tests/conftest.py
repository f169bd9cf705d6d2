"""Offline, single-threaded, and $FICO_HOME in a temporary folder (trained models, sha memo)."""

from __future__ import annotations

import numpy as np
import pytest

from fico_registry.plugin_api.fixtures import isolated_fico_home, offline_environment  # noqa: F401 (autouse)

offline_environment()

CAPTIONS = [
    "A man riding a red bike down the street.",
    "Two dogs play in the snow",
    "a woman in a blue shirt is reading a book",
    "A brown dog runs across the green grass.",
    "Three people sit at a table with food",
    "a cat sleeps on a white bed",
    "A man and a woman walk down the street",
    "two children play with a red ball in the park",
]


@pytest.fixture
def captions() -> list[str]:
    return list(CAPTIONS) * 6  # 48 captions, every word at least 6 times


@pytest.fixture
def images():
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + 6 * i, 52, 3), dtype=np.uint8)) for i in range(5)]
