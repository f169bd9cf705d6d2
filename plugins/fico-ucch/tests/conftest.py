"""Fixtures in UCCH's original format: `{arch}_{bit}_best_checkpoint.t7` dicts written as UCCH.py does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fico_registry.plugin_api.fixtures import isolated_fico_home, offline_environment  # noqa: F401 (autouse)

offline_environment()


def original_mlp(in_dim: int, hidden: list[int], bits: int):
    """nets/ImageNet.py / TextNet.py's layout, built independently of the plugin: a module whose
    `fc` is Linear, ReLU(inplace), [Linear, ReLU(inplace)]*, Linear."""
    from torch import nn

    widths = [in_dim, *hidden, bits]
    layers = []
    for i in range(len(widths) - 1):
        if i:
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(widths[i], widths[i + 1]))
    holder = nn.Module()
    holder.fc = nn.Sequential(*layers)
    return holder


def _write_t7(
    folder: Path,
    *,
    image_dim: int = 4096,
    image_hidden: tuple[int, ...] = (12, 10),
    text_dim: int = 300,
    text_hidden: tuple[int, ...] = (12,),
    bits: int = 16,
    seed: int = 0,
    arch: str = "vgg11",
    legacy: bool = False,
    mutate=None,
) -> Path:
    """A checkpoint with the keys, value types and optimizer state of UCCH.py's test()."""
    import torch

    torch.manual_seed(seed)
    image_model = original_mlp(image_dim, list(image_hidden), bits)
    text_model = original_mlp(text_dim, list(text_hidden), bits)
    parameters = list(image_model.parameters()) + list(text_model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-4, weight_decay=1e-6)
    loss = sum(p.sum() for p in parameters)  # one step, so the optimizer state is populated
    loss.backward()
    optimizer.step()
    state = {
        "image_model_state_dict": image_model.state_dict(),
        "text_model_state_dict": text_model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "Avg": np.float64(0.61),  # fx_calc_map_multilabel_k returns numpy scalars
        "Img2Txt": np.float64(0.6),
        "Txt2Img": np.float64(0.62),
        "epoch": 7,
    }
    if mutate is not None:
        mutate(state)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arch}_{bits}_best_checkpoint.t7"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture
def t7(tmp_path) -> Path:
    return _write_t7(tmp_path / "ckpt")


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    images = np.maximum(rng.standard_normal((6, 4096)), 0).astype(np.float32)  # fc7 after ReLU
    texts = (0.1 * rng.standard_normal((6, 300))).astype(np.float32)
    return images, texts


@pytest.fixture
def write_t7():
    """The checkpoint writer itself, for tests that vary the fixture."""
    return _write_t7
