"""Session fixtures: a tiny transformers folder, a tiny LAVIS .pth and a vocab.txt (all offline)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest
from blip2_fixtures import perturbed_tiny_model, save_lavis, to_lavis_state_dict, write_vocab


@pytest.fixture(scope="session")
def tiny_model():
    return perturbed_tiny_model()


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory, tiny_model) -> Path:
    folder = tmp_path_factory.mktemp("hf") / "blip2-tiny"
    tiny_model.save_pretrained(folder)
    write_vocab(folder / "vocab.txt")
    return folder


@pytest.fixture(scope="session")
def lavis_pth(tmp_path_factory, tiny_model) -> Path:
    folder = tmp_path_factory.mktemp("lavis")
    write_vocab(folder / "vocab.txt")
    return save_lavis(to_lavis_state_dict(tiny_model.state_dict()), folder / "blip2_finetune_coco.pth")
