"""An original DADH run folder + the original data file load with no options: the z-scoring
statistics are computed from the .mat file main.py read, as datasets/data_handler.py does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fico_registry import load_model
from fico_registry.errors import CheckpointError, ConfigError

scipy_io = pytest.importorskip("scipy.io")


def _write_mat(path: Path, matrix: str, rows: int = 40, width: int = 4096) -> np.ndarray:
    """A data file in the original layout: image features, tags, labels (FLICKR-25K.mat: images / YAll / LAll)."""
    rng = np.random.default_rng(1)
    images = (np.maximum(rng.standard_normal((rows, width)), 0) * 3 + 0.5).astype(np.float32)
    text, labels = ("YAll", "LAll") if matrix == "images" else ("text", "label")
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy_io.savemat(
        path, {matrix: images, text: rng.integers(0, 2, (rows, 12)), labels: rng.integers(0, 2, (rows, 5))}
    )
    return images


def _original_repo(root: Path, write_gen, dataset: str = "flickr25k") -> tuple[Path, np.ndarray]:
    """DADH's working tree after `python main.py train --flag mir --bit 16`."""
    name, matrix = {"flickr25k": ("FLICKR-25K.mat", "images"), "nus-wide": ("NUS-WIDE-TC21.mat", "image")}[dataset]
    images = _write_mat(root / "data" / name, matrix)
    return write_gen(root / "checkpoints" / f"{dataset}_16", norm=None), images


@pytest.mark.parametrize("dataset", ["flickr25k", "nus-wide"])
def test_run_folder_and_data_file_need_no_options(tmp_path, features, write_gen, dataset):
    path, images = _original_repo(tmp_path / "DADH", write_gen, dataset)
    model = load_model("dadh", checkpoint=path)
    mean, std = float(images.mean()), float(images.std())  # data_handler.py: numpy over the whole matrix
    assert (model.encoder.image_mean, model.encoder.image_std) == (mean, std)
    given = load_model("dadh", config={"image_mean": mean, "image_std": std}, checkpoint=path)
    assert torch.equal(model.encode_images(features[0]), given.encode_images(features[0]))
    assert load_model("dadh", checkpoint=path.parent).encoder.image_mean == mean  # the run folder itself


def test_missing_data_file_is_named(tmp_path, write_gen):
    path = write_gen(tmp_path / "DADH" / "checkpoints" / "flickr25k_16", norm=None)
    with pytest.raises(CheckpointError) as err:
        load_model("dadh", checkpoint=path)
    text = str(err.value)
    assert "FLICKR-25K.mat" in text and "./data/FLICKR-25K.mat" in text and "'data_file'" in text


def test_data_file_option_for_other_datasets(tmp_path, write_gen):
    path = write_gen(tmp_path / "runs" / "mine", norm=None)
    with pytest.raises(CheckpointError, match=r"data_file=.*image_norm\.json"):
        load_model("dadh", checkpoint=path)
    images = _write_mat(tmp_path / "f30k.mat", "images")
    model = load_model("dadh", config={"data_file": str(tmp_path / "f30k.mat")}, checkpoint=path)
    assert model.encoder.image_mean == float(images.mean())
    with pytest.raises(ConfigError, match="not a file"):
        load_model("dadh", config={"data_file": str(tmp_path / "none.mat")}, checkpoint=path)


def test_a_data_file_of_another_width_is_refused(tmp_path, write_gen):
    path = write_gen(tmp_path / "runs" / "mine", norm=None)
    _write_mat(tmp_path / "other.mat", "image", width=512)
    with pytest.raises(CheckpointError, match="512 features per item"):
        load_model("dadh", config={"data_file": str(tmp_path / "other.mat")}, checkpoint=path)
