"""Fixtures in DADH's original format: `checkpoints/{dataset}_{bit}/GEN_module.pth`, GEN's raw state dict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fico_registry.plugin_api.fixtures import isolated_fico_home, offline_environment  # noqa: F401 (autouse)

offline_environment()


def original_gen(image_dim: int, text_dim: int, hidden: int, bits: int, dropout: bool):
    """models/gen_model.py's GEN (without cnn_f), built independently of the plugin."""
    from torch import nn

    def branch(in_dim):
        layers = []
        for width_in, width_out in ((in_dim, hidden), (hidden, hidden // 2), (hidden // 2, hidden // 4)):
            layers += [nn.Linear(width_in, width_out, bias=True), nn.BatchNorm1d(width_out), nn.ReLU(True)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        return nn.Sequential(*layers)

    gen = nn.Module()
    gen.image_module = branch(image_dim)
    gen.text_module = branch(text_dim)
    gen.hash_module = nn.ModuleDict(
        {
            "image": nn.Sequential(nn.Linear(hidden // 4, bits, bias=True), nn.Tanh()),
            "text": nn.Sequential(nn.Linear(hidden // 4, bits, bias=True), nn.Tanh()),
        }
    )
    return gen


def _write_gen(
    folder: Path,
    *,
    image_dim: int = 4096,
    text_dim: int = 300,
    hidden: int = 24,
    bits: int = 16,
    dropout: bool = False,
    seed: int = 0,
    norm: tuple[float, float] | None = (0.7, 1.9),
    legacy: bool = False,
    mutate=None,
) -> Path:
    """GEN_module.pth as main.py's save_model writes it, after a few training-mode batches (so the
    BatchNorm running statistics are not the defaults), plus image_norm.json when `norm` is given."""
    import torch

    torch.manual_seed(seed)
    gen = original_gen(image_dim, text_dim, hidden, bits, dropout)
    gen.train()
    for _ in range(3):
        gen.image_module(torch.randn(8, image_dim) * 2 + 1)
        gen.text_module(torch.randn(8, text_dim))
    state = gen.state_dict()
    if mutate is not None:
        mutate(state)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "GEN_module.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    if norm is not None:
        (folder / "image_norm.json").write_text(json.dumps({"mean": norm[0], "std": norm[1]}))
    return path


@pytest.fixture
def gen_file(tmp_path) -> Path:
    return _write_gen(tmp_path / "checkpoints" / "mir_16")


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    images = np.maximum(rng.standard_normal((6, 4096)) * 2, 0).astype(np.float32)
    texts = (0.1 * rng.standard_normal((6, 300))).astype(np.float32)
    return images, texts


@pytest.fixture
def write_gen():
    """The checkpoint writer itself, for tests that vary the fixture."""
    return _write_gen
