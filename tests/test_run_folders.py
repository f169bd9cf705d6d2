"""fico_registry.plugin_api.run_folders: side files of an original training run found from the checkpoint's place."""

from __future__ import annotations

from pathlib import Path

import pytest

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.run_folders import (
    MAX_ANCESTORS,
    candidate_paths,
    checkpoint_in_run_folder,
    find_original_file,
    missing_original_file,
    training_folders,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    return path


def test_training_folder_is_deduced_from_where_the_run_saved_the_checkpoint(tmp_path: Path) -> None:
    ck = _touch(tmp_path / "deep" / "a" / "b" / "c" / "d" / "e" / "ck.pth")
    # saved under ./a/b/c/d/e relative to the training folder: more levels than MAX_ANCESTORS
    assert training_folders(ck, "./a/b/c/d/e")[0] == tmp_path / "deep"
    assert training_folders(ck, "/home/u/repo/a/b/c/d/e")[0] == tmp_path / "deep"
    assert training_folders(ck, "other/e")[0] == ck.parent  # does not match the path: only the ancestors
    assert training_folders(ck) == [ck.parent, *list(ck.parent.parents)[:MAX_ANCESTORS]]


def test_stored_relative_path_is_found_below_the_training_folder(tmp_path: Path) -> None:
    vocab = _touch(tmp_path / "repo" / "vocab" / "v.json")
    ck = _touch(tmp_path / "repo" / "a" / "b" / "c" / "d" / "e" / "ck.pth")
    assert find_original_file("./vocab/v.json", ck) is None  # six levels up: beyond the ancestors searched
    assert find_original_file("./vocab/v.json", ck, saved_dir="a/b/c/d/e") == vocab


def test_absolute_path_of_another_machine_is_found_by_its_last_components(tmp_path: Path) -> None:
    vocab = _touch(tmp_path / "copy" / "data" / "vocab" / "v.json")
    ck = _touch(tmp_path / "copy" / "runs" / "x" / "ck.pth")
    assert find_original_file("/home/someone/proj/data/vocab/v.json", ck) == vocab


def test_a_file_beside_the_checkpoint_wins_and_an_existing_absolute_path_is_used(tmp_path: Path) -> None:
    ck = _touch(tmp_path / "run" / "ck.pth")
    absolute = _touch(tmp_path / "elsewhere" / "v.json")
    assert find_original_file(str(absolute), ck) == absolute
    beside = _touch(tmp_path / "run" / "v.json")
    assert find_original_file(str(absolute), ck, beside=("v.json",)) == beside
    assert candidate_paths(None, ck, beside=("v.json",)) == [beside]


def test_nothing_stored_and_nothing_beside_finds_nothing(tmp_path: Path) -> None:
    ck = _touch(tmp_path / "run" / "ck.pth")
    assert find_original_file(None, ck) is None
    assert find_original_file("", ck, beside=("v.json",)) is None


def test_run_folder_resolves_to_its_checkpoint(tmp_path: Path) -> None:
    best = _touch(tmp_path / "run" / "checkpoint" / "model_best.pth.tar")
    names = ("model_best.pth.tar", "checkpoint.pth.tar")
    assert checkpoint_in_run_folder(tmp_path / "run", names, subfolders=("checkpoint",), model="m") == best
    assert checkpoint_in_run_folder(best, names, model="m") == best
    with pytest.raises(CheckpointError, match=r"holds no model_best\.pth\.tar / checkpoint\.pth\.tar"):
        checkpoint_in_run_folder(tmp_path / "run", names, model="m")
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_in_run_folder(tmp_path / "nothing", names, model="m")


def test_the_error_names_the_file_the_option_and_the_config_key(tmp_path: Path) -> None:
    error = missing_original_file(
        "scan", "f30k_precomp_vocab.json", checkpoint=tmp_path / "ck", option="opt.vocab_path", stored="./vocab/",
        config_key="vocab_path",
    )  # fmt: skip
    assert isinstance(error, CheckpointError)
    text = str(error)
    assert "used f30k_precomp_vocab.json (its opt.vocab_path = './vocab/')" in text
    assert "config={'vocab_path': '/path/to/f30k_precomp_vocab.json'}" in text


def test_checkpoints_in_folder_takes_exactly_the_members(tmp_path):
    from fico_registry.plugin_api import checkpoints_in_folder

    for name in ("b.pth.tar", "a.pth", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert checkpoints_in_folder(tmp_path, 2, model="m") == [tmp_path / "a.pth", tmp_path / "b.pth.tar"]
    with pytest.raises(CheckpointError, match=r"must hold exactly three checkpoint files, found a\.pth, b\.pth\.tar"):
        checkpoints_in_folder(tmp_path, 3, model="m")
    with pytest.raises(CheckpointError, match=r"^m: the checkpoint must be a folder with the two member .* \(or X\); "):
        checkpoints_in_folder(tmp_path / "a.pth", 2, model="m", alternative=" (or X)")
