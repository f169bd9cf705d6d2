"""Session fixtures: X-VLM checkpoints in the original layouts (tiny) with a vocab.txt beside them."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest
import torch
from fico_xvlm.plugin import TINY
from xvlm_fixtures import original_state_dict, save_retrieval_checkpoint, to_pretrain_layout, write_vocab


@pytest.fixture(scope="session")
def tiny_state() -> dict:
    return original_state_dict(TINY, seed=1)


@pytest.fixture(scope="session")
def retrieval_pth(tmp_path_factory, tiny_state) -> Path:
    """Retrieval.py's layout: {'model': state_dict, 'config': yaml config}, vocab.txt beside it."""
    folder = tmp_path_factory.mktemp("retrieval")
    write_vocab(folder / "vocab.txt")
    return save_retrieval_checkpoint(tiny_state, TINY, folder / "checkpoint_best.pth")


@pytest.fixture(scope="session")
def raw_th(tmp_path_factory, tiny_state) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_vocab(folder / "bert-base-uncased-vocab.txt")
    torch.save(tiny_state, folder / "model_state_epoch_9.th")
    return folder / "model_state_epoch_9.th"


@pytest.fixture(scope="session")
def pretrain_th(tmp_path_factory, tiny_state) -> Path:
    folder = tmp_path_factory.mktemp("pretrain")
    write_vocab(folder / "vocab.txt")
    torch.save(to_pretrain_layout(tiny_state, TINY), folder / "4m_base_model_state_step_199999.th")
    return folder / "4m_base_model_state_step_199999.th"
