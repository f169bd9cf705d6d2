"""An original SCAN run folder loads with only its path: train.py's layout, opt.vocab_path honoured."""

from __future__ import annotations

from pathlib import Path

import pytest
from scan_originals import write_scan_checkpoint, write_vocab_json

from fico_registry import load_model
from fico_registry.errors import CheckpointError

VOCAB = "f30k_precomp_vocab.json"


def _original_repo(root: Path, **opt: object) -> Path:
    """SCAN's working tree after `python train.py` with the defaults: vocab/ and runs/runX/checkpoint/."""
    (root / "vocab").mkdir(parents=True)
    write_vocab_json(root / "vocab" / VOCAB)
    return write_scan_checkpoint(root / "runs" / "runX" / "checkpoint", vocab=False, **opt)


def test_checkpoint_file_alone_finds_opt_vocab_path(tmp_path: Path) -> None:
    path = _original_repo(tmp_path / "SCAN")  # opt.vocab_path './vocab/', opt.model_name './runs/runX/checkpoint'
    model = load_model("scan", checkpoint=path, device="cpu")
    assert model.encoder.scorer.captions.vocab.source == str(tmp_path / "SCAN" / "vocab" / VOCAB)


@pytest.mark.parametrize("folder", ["runs/runX", "runs/runX/checkpoint"])
def test_run_folder_alone_loads(tmp_path: Path, folder: str) -> None:
    _original_repo(tmp_path / "SCAN")
    assert load_model("scan", checkpoint=tmp_path / "SCAN" / folder, device="cpu").encoder.dim == 8


def test_absolute_paths_of_the_training_machine_are_found_below_the_copy(tmp_path: Path) -> None:
    path = _original_repo(
        tmp_path / "copy" / "SCAN",
        vocab_path="/home/someone/SCAN/vocab/",
        model_name="/home/someone/SCAN/runs/runX/checkpoint",
    )
    model = load_model("scan", checkpoint=path, device="cpu")
    assert model.encoder.scorer.captions.vocab.source == str(tmp_path / "copy" / "SCAN" / "vocab" / VOCAB)


def test_a_custom_vocab_folder_relative_to_the_training_folder(tmp_path: Path) -> None:
    root = tmp_path / "SCAN"
    (root / "data" / "my_vocab").mkdir(parents=True)
    write_vocab_json(root / "data" / "my_vocab" / VOCAB)
    path = write_scan_checkpoint(root / "out" / "exp1", vocab=False, vocab_path="data/my_vocab", model_name="out/exp1")
    model = load_model("scan", checkpoint=path, device="cpu")
    assert model.encoder.scorer.captions.vocab.source == str(root / "data" / "my_vocab" / VOCAB)


def test_missing_vocabulary_names_the_original_file_and_the_option(tmp_path: Path) -> None:
    path = write_scan_checkpoint(tmp_path / "SCAN" / "runs" / "runX" / "checkpoint", vocab=False)
    with pytest.raises(CheckpointError) as err:
        load_model("scan", checkpoint=path, device="cpu")
    text = str(err.value)
    assert VOCAB in text and "opt.vocab_path = './vocab/'" in text and "'vocab_path'" in text


def test_a_run_folder_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    (tmp_path / "runs" / "runX").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"holds no model_best\.pth\.tar"):
        load_model("scan", checkpoint=tmp_path / "runs" / "runX", device="cpu")
