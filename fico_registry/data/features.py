"""Reading precomputed feature files (.npy memory-mapped; .h5 / .mat) and aligning them by id."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import DataFormatError, MissingInputError


def open_feature_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Open a feature matrix without reading it all: .npy is memory-mapped."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingInputError(f"feature file {path} does not exist")
    if path.endswith(".npy"):
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise DataFormatError(f"{path}: not a plain numeric .npy file ({exc})") from None
    raise DataFormatError(f"{path}: unsupported feature file type (use .npy, .h5 or .mat)")


def align_by_ids(own_ids: Sequence[str], file_ids: Sequence[str], *, what: str) -> np.ndarray:
    """index[i] = row of the file holding item own_ids[i]; every corpus id must be present."""
    position = {str(x): i for i, x in enumerate(file_ids)}
    if len(position) != len(file_ids):
        raise DataFormatError(f"{what}: the id list has duplicates")
    missing = [x for x in own_ids if str(x) not in position]
    if missing:
        raise MissingInputError(f"{what}: {len(missing)} corpus ids are not in the file (e.g. {missing[:3]})")
    return np.fromiter((position[str(x)] for x in own_ids), dtype=np.int64, count=len(own_ids))
