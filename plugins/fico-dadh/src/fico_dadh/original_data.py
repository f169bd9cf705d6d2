"""The z-scoring statistics of an original DADH run, computed from its data file as the original does.

main.py never stores them: `datasets/data_handler.py` loads the whole .mat file named by
config.py's `data_path` and z-scores the image matrix with its scalar mean and std
(`images = (images - images.mean()) / images.std()`), over every row (query, retrieval and
training items alike). The run folder main.py writes is `checkpoints/{opt.dataset}_{opt.bit}/`
below the folder it ran in, and config.py fixes the data file per dataset:

    flag 'mir' -> dataset 'flickr25k', ./data/FLICKR-25K.mat, matrix 'images'
    flag 'nus' -> dataset 'nus-wide',  ./data/NUS-WIDE-TC21.mat, matrix 'image'

so a run folder plus the original data file gives both numbers with no other input. A data file
of another dataset is passed as config `data_file` (its matrix is 'images' or 'image').
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError, ConfigError, DataFormatError
from fico_registry.plugin_api.run_folders import find_original_file, missing_original_file

# config.py's Default.data(flag): dataset name -> (data_path, the image matrix data_handler.py reads)
ORIGINAL_DATA: dict[str, tuple[str, str]] = {
    "flickr25k": ("./data/FLICKR-25K.mat", "images"),
    "nus-wide": ("./data/NUS-WIDE-TC21.mat", "image"),
}
IMAGE_MATRICES = ("images", "image")  # load_flickr25k / load_nus_wide


def run_dataset(checkpoint: Path) -> str | None:
    """`flickr25k` for checkpoints/flickr25k_64/GEN_module.pth (main.py's save_model path), else None."""
    name, _, bits = checkpoint.parent.name.rpartition("_")
    return name if name and bits.isdigit() else None


def find_data_file(checkpoint: Path, data_file: str | None) -> tuple[Path | None, str | None]:
    """(the original .mat file, the matrix to read) for this run; (None, None) when nothing says which."""
    if data_file:
        path = Path(data_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"dadh: config data_file {path} is not a file (give the .mat file main.py trained on)")
        return path, None
    dataset = run_dataset(checkpoint)
    if dataset not in ORIGINAL_DATA:
        return None, None
    stored, matrix = ORIGINAL_DATA[dataset]
    found = find_original_file(
        stored, checkpoint, saved_dir=f"checkpoints/{checkpoint.parent.name}", beside=(Path(stored).name,)
    )
    if found is None:
        raise missing_original_file(
            "dadh",
            Path(stored).name,
            checkpoint=checkpoint,
            option=f"config.py data_path of dataset {dataset!r}",
            stored=stored,
            config_key="data_file",
            why=(
                "whose image matrix gives the scalar mean / std DADH z-scores image features with (GEN_module.pth "
                "does not store them; image_norm.json or config image_mean / image_std would do too)"
            ),
        )
    return found, matrix


def image_statistics(path: Path, matrix: str | None = None, *, width: int | None = None) -> tuple[float, float]:
    """images.mean(), images.std() of the data file's image matrix, computed by numpy as data_handler.py does."""
    images = _read_matrix(path, matrix)
    if width is not None and images.shape[1] != width:
        raise CheckpointError(
            f"{path}: the image matrix has {images.shape[1]} features per item but the checkpoint's image_module "
            f"takes {width}: not the data file this model was trained on"
        )
    mean, std = float(images.mean()), float(images.std())
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise DataFormatError(f"{path}: the image matrix has mean {mean} / std {std}; z-scoring needs finite, std > 0")
    return mean, std


def _read_matrix(path: Path, matrix: str | None) -> Any:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ConfigError("dadh: reading the original .mat data file needs scipy (pip install scipy)") from None
    names = [matrix] if matrix else list(IMAGE_MATRICES)
    try:
        data = loadmat(path, variable_names=names)
    except NotImplementedError:  # scipy's message for MATLAB v7.3 (HDF5) files
        raise DataFormatError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat (what DADH's data_handler.py uses) "
            "cannot read: give the file main.py trained on, or config image_mean / image_std"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise DataFormatError(f"{path}: not a readable .mat file ({exc})") from None
    for name in names:
        if name in data:
            images = data[name]
            if getattr(images, "ndim", 0) != 2 or images.dtype.kind not in "fiu":
                raise DataFormatError(f"{path}: {name!r} is not a numeric (items, features) matrix")
            return images
    raise CheckpointError(f"{path} holds no image matrix {' / '.join(map(repr, names))} (as data_handler.py reads)")
