"""Fixtures: a sentencepiece model file and unilm-layout checkpoints (see beit3_fixtures)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest
from beit3_fixtures import perturbed_tiny_network, save_unilm, write_spm


@pytest.fixture(scope="session")
def spm_file(tmp_path_factory) -> Path:
    return write_spm(tmp_path_factory.mktemp("spm") / "beit3.spm")


@pytest.fixture(scope="session")
def tiny_network():
    return perturbed_tiny_network()


@pytest.fixture(scope="session")
def unilm_checkpoint(tmp_path_factory, tiny_network, spm_file) -> Path:
    """beit3_base_patch16_384_coco_retrieval.pth layout with beit3.spm beside it, tiny sizes."""
    folder = tmp_path_factory.mktemp("unilm")
    (folder / "beit3.spm").write_bytes(spm_file.read_bytes())
    return save_unilm(tiny_network.state_dict(), folder / "beit3_base_patch16_384_coco_retrieval.pth")


@pytest.fixture(autouse=True)
def isolated_fico_home(tmp_path, monkeypatch):
    """No user-supplied beit3.spm or checkpoint from ~/.cache/fico leaks into a test."""
    monkeypatch.setenv("FICO_HOME", str(tmp_path / "fico-home"))
