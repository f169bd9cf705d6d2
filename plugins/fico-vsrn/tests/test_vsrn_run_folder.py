"""An original VSRN run folder loads with only its path: train.py's layout, opt.vocab_path honoured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vsrn_originals import SPECIALS, write_checkpoint, write_vocab_pickle

from fico_registry import load_model
from fico_registry.errors import CheckpointError

WORDS = ["a", "red", "circle", "blue", "square"]
VOCAB = "f30k_precomp_vocab.pkl"


def _original_repo(root: Path, **opt: Any) -> Path:
    """VSRN's working tree after train.py: vocab/ and runs/flickr_VSRN/model_best.pth.tar (opt.logger_name)."""
    (root / "vocab").mkdir(parents=True)
    write_vocab_pickle(root / "vocab" / VOCAB, WORDS)
    (root / "runs" / "flickr_VSRN").mkdir(parents=True)
    return write_checkpoint(
        root / "runs" / "flickr_VSRN" / "model_best.pth.tar", vocab_size=len(SPECIALS) + len(WORDS), **opt
    )


def _vocab_source(model: Any) -> str:
    return model.encoder.network.captions.vocab.source


def test_checkpoint_file_alone_finds_opt_vocab_path(tmp_path: Path) -> None:
    path = _original_repo(tmp_path / "VSRN")  # opt.vocab_path './vocab/', opt.logger_name 'runs/flickr_VSRN'
    model = load_model("vsrn", checkpoint=path, device="cpu")
    assert _vocab_source(model) == str(tmp_path / "VSRN" / "vocab" / VOCAB)


def test_run_folder_alone_loads(tmp_path: Path) -> None:
    path = _original_repo(tmp_path / "VSRN")
    assert load_model("vsrn", checkpoint=path.parent, device="cpu").encoder.dim == 8


def test_absolute_paths_of_the_training_machine(tmp_path: Path) -> None:
    path = _original_repo(
        tmp_path / "VSRN", vocab_path="/home/u/VSRN/vocab/", logger_name="/home/u/VSRN/runs/flickr_VSRN"
    )
    assert _vocab_source(load_model("vsrn", checkpoint=path, device="cpu")) == str(tmp_path / "VSRN" / "vocab" / VOCAB)


def test_missing_vocabulary_names_the_original_file_and_the_option(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    path = write_checkpoint(tmp_path / "runs" / "model_best.pth.tar", vocab_size=len(SPECIALS) + len(WORDS))
    with pytest.raises(CheckpointError) as err:
        load_model("vsrn", checkpoint=path, device="cpu")
    assert (
        VOCAB in str(err.value) and "opt.vocab_path = './vocab/'" in str(err.value) and "'vocab_path'" in str(err.value)
    )
