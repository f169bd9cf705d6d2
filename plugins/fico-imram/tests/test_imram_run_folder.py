"""An original IMRAM run folder loads with only its path (script/tune_f30k.sh's layout)."""

from __future__ import annotations

from pathlib import Path

import pytest
from imram_originals import IMRAM_OPT, write_imram_checkpoint, write_vocab_json

from fico_registry import load_model
from fico_registry.errors import CheckpointError

VOCAB = "f30k_precomp_vocab.json"


def _original_repo(root: Path) -> Path:
    """IMRAM's working tree after tune_f30k.sh: vocab/ (shipped) and checkpoint/f30k_scan//gpus_.../."""
    (root / "vocab").mkdir(parents=True)
    write_vocab_json(root / "vocab" / VOCAB)
    return write_imram_checkpoint(root / IMRAM_OPT["model_name"].replace("//", "/"), vocab=False)


def test_checkpoint_file_alone_finds_opt_vocab_path(tmp_path: Path) -> None:
    path = _original_repo(tmp_path / "IMRAM")  # opt.vocab_path 'vocab', relative to the repository
    encoder = load_model("imram", checkpoint=path, device="cpu").encoder
    assert encoder.captions.vocab.source == str(tmp_path / "IMRAM" / "vocab" / VOCAB)


def test_run_folder_alone_loads(tmp_path: Path) -> None:
    path = _original_repo(tmp_path / "IMRAM")
    assert load_model("imram", checkpoint=path.parent, device="cpu").encoder.dim == 8


def test_missing_vocabulary_names_the_original_file_and_the_option(tmp_path: Path) -> None:
    path = write_imram_checkpoint(tmp_path / "IMRAM" / "checkpoint" / "f30k_scan" / "run", vocab=False)
    with pytest.raises(CheckpointError) as err:
        load_model("imram", checkpoint=path, device="cpu")
    assert VOCAB in str(err.value) and "opt.vocab_path = 'vocab'" in str(err.value) and "'vocab_path'" in str(err.value)
