"""Reading precomputed feature files and aligning them to a corpus.

Supported files (one matrix per file, or one named variable in it):
- ``.npy``: memory-mapped.
- ``.h5`` / ``.hdf5`` / ``.h5py``: an HDF5 dataset, stored row-major as written by h5py
  (e.g. UCCH's ``MSCOCO_deep_doc2vec_data_rand.h5py`` with XAll / YAll / LAll).
- ``.mat``: MATLAB v5 (read with scipy.io) or v7.3 (HDF5, read with h5py). MATLAB writes v7.3
  column-major, so an (n, d) matrix is stored as (d, n): it is transposed back here.
Contiguous, uncompressed HDF5 datasets are memory-mapped; others are read once and kept in a
small in-process cache, as are .mat v5 variables (scipy cannot map them).

Region features in the bottom-up-attention layout come in two row layouts (see
`region_rows_index`): SCAN / VSRN / IMRAM's ``{split}_ims.npy`` / ``{split}_feat.npy`` with one row
per image (their loaders then use ``im_div=5``: caption j -> image row j // 5), or one row per
caption (each image repeated once per caption, ``im_div=1``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import DataFormatError, MissingInputError

HDF5_SUFFIXES = (".h5", ".hdf5", ".h5py")
MATLAB_HDF5_HEADER = b"MATLAB 7.3 MAT-file"
# Names bottom-up region feature files have in the original repositories.
REGION_FILE_PATTERNS = ("{split}_ims.npy", "{split}_feat.npy")

_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_ENTRIES = 8


# -- opening files -----------------------------------------------------------------------------
def open_feature_array(
    path: str | os.PathLike, key: str | None = None, *, transposed: bool | None = None
) -> np.ndarray:
    """Open a feature matrix without reading it all when the format allows.

    `key` names the variable / dataset inside a .mat or HDF5 file (optional when the file has
    exactly one). `transposed` overrides the layout guess (True for MATLAB v7.3 files, False for
    other HDF5 files). Rows are items: the result's shape[0] is the number of items.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingInputError(f"feature file {path} does not exist")
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        if key is not None:
            raise DataFormatError(f"{path}: a .npy file holds one array; do not pass key={key!r}")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise DataFormatError(f"{path}: not a plain numeric .npy file ({exc})") from None
    if suffix == ".mat" or suffix in HDF5_SUFFIXES:
        stat = os.stat(path)
        cache_key = (os.path.abspath(path), key, transposed, stat.st_mtime_ns, stat.st_size)
        with _CACHE_LOCK:
            if cache_key in _CACHE:
                _CACHE.move_to_end(cache_key)
                return _CACHE[cache_key]
        if suffix == ".mat" and not _is_hdf5(path):
            array = _read_mat_v5(path, key)
        else:
            if transposed is None:
                transposed = suffix == ".mat" or _has_matlab_header(path)
            array = _open_hdf5(path, key, transposed)
        with _CACHE_LOCK:
            _CACHE[cache_key] = array
            while len(_CACHE) > _CACHE_ENTRIES:
                _CACHE.popitem(last=False)
        return array
    raise DataFormatError(f"{path}: unsupported feature file type {suffix!r} (use .npy, .h5/.hdf5/.h5py or .mat)")


def list_variables(path: str | os.PathLike) -> list[str]:
    """The array names a .mat / HDF5 file holds (to say which ones exist in error messages)."""
    path = os.fspath(path)
    if Path(path).suffix.lower() == ".mat" and not _is_hdf5(path):
        from scipy.io import whosmat

        return [name for name, _shape, _cls in whosmat(path)]
    import h5py

    names: list[str] = []
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return [n for n in names if not n.startswith("#")]  # MATLAB's #refs# group holds no user data


def _is_hdf5(path: str) -> bool:
    import h5py

    return bool(h5py.is_hdf5(path))


def _has_matlab_header(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MATLAB_HDF5_HEADER)) == MATLAB_HDF5_HEADER


def _read_mat_v5(path: str, key: str | None) -> np.ndarray:
    from scipy.io import loadmat, whosmat

    try:
        names = [name for name, _shape, _cls in whosmat(path)]
    except Exception as exc:  # scipy raises several types for non-MAT files
        raise DataFormatError(f"{path}: not a readable MATLAB file ({exc})") from None
    key = _pick_key(path, key, names)
    array = loadmat(path, variable_names=[key])[key]
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise DataFormatError(f"{path}: variable {key!r} is not a numeric matrix (MATLAB class {array.dtype})")
    array.setflags(write=False)
    return array


def _open_hdf5(path: str, key: str | None, transposed: bool) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as handle:
        names = list_variables(path)
        key = _pick_key(path, key, names)
        dataset = handle[key]
        if dataset.dtype.kind not in "biuf":
            raise DataFormatError(f"{path}: dataset {key!r} is not numeric (dtype {dataset.dtype})")
        offset = dataset.id.get_offset()
        mappable = offset is not None and dataset.chunks is None and dataset.compression is None and dataset.size > 0
        if mappable:
            array = np.memmap(path, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)
        else:
            array = dataset[()]
            array.setflags(write=False)
    # MATLAB v7.3 is column-major: reversing the axes gives MATLAB's own (rows, cols, ...) order.
    return array.transpose() if transposed else array


def _pick_key(path: str, key: str | None, names: Sequence[str]) -> str:
    if key is None:
        if len(names) == 1:
            return names[0]
        raise DataFormatError(f"{path} holds several arrays ({', '.join(names)}); pass key= to choose one")
    if key not in names:
        raise DataFormatError(f"{path} has no array {key!r}; it has: {', '.join(names) or 'none'}")
    return key


def read_matrix(path: str | os.PathLike, key: str | None = None, *, transposed: bool | None = None) -> np.ndarray:
    """Read a whole matrix into memory (labels, small feature matrices)."""
    return np.array(open_feature_array(path, key, transposed=transposed))


# -- aligning rows to corpus items ---------------------------------------------------------------
def align_by_ids(own_ids: Sequence[str], file_ids: Sequence[str], *, what: str) -> np.ndarray:
    """index[i] = row of the file holding item own_ids[i]; every corpus id must be present."""
    position = {str(x): i for i, x in enumerate(file_ids)}
    if len(position) != len(file_ids):
        raise DataFormatError(f"{what}: the id list has duplicates")
    missing = [x for x in own_ids if str(x) not in position]
    if missing:
        raise MissingInputError(f"{what}: {len(missing)} corpus ids are not in the file (e.g. {missing[:3]})")
    return np.fromiter((position[str(x)] for x in own_ids), dtype=np.int64, count=len(own_ids))


def region_rows_index(array: np.ndarray, n_images: int, *, what: str = "features") -> np.ndarray | None:
    """Which row holds each image, for a per-image feature file in either precomp layout.

    - n_images rows: one row per image, in corpus order -> None (identity).
    - k * n_images rows (k > 1): each image repeated k times in a row (one row per caption, as in
      rkiros-style files where SCAN's loader uses im_div=1) -> rows 0, k, 2k, ...
      The first two rows must then be equal, else the file is not laid out that way.
    Anything else raises MissingInputError naming both counts.
    """
    rows = int(array.shape[0])
    if rows == n_images:
        return None
    if rows > n_images and rows % n_images == 0:
        repeat = rows // n_images
        if not np.array_equal(np.asarray(array[0]), np.asarray(array[1])):
            raise DataFormatError(
                f"{what}: {rows} rows for {n_images} images, but rows 0 and 1 differ, so the file is not "
                f"one row per caption with each image repeated {repeat} times; pass ids= or index= to align it"
            )
        return np.arange(n_images, dtype=np.int64) * repeat
    raise MissingInputError(
        f"{what}: the file has {rows} rows but the corpus has {n_images} images "
        f"(expected {n_images} rows, or a multiple with each image repeated); "
        f"check that the features belong to this split, or pass ids= to align by id"
    )


def find_region_features(folder: str | os.PathLike, splits: Sequence[str]) -> Path | None:
    """The first `{split}_ims.npy` / `{split}_feat.npy` found in `folder` for the given split names."""
    folder = Path(folder)
    for split in splits:
        for pattern in REGION_FILE_PATTERNS:
            candidate = folder / pattern.format(split=split)
            if candidate.is_file():
                return candidate
    return None


def read_id_file(path: str | os.PathLike) -> list[str]:
    """One id per line (SCAN / VSE `{split}_ids.txt`), blank lines skipped."""
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def check_region_shape(array: np.ndarray, path: str | os.PathLike) -> None:
    if array.ndim != 3:
        raise DataFormatError(
            f"{path}: region features must be (n, regions, dim), e.g. (n, 36, 2048) bottom-up features; "
            f"got {array.shape}"
        )


def attach_region_features(
    corpus: Any,
    path: str | os.PathLike,
    *,
    name: str = "regions",
    ids: Sequence[str] | str | os.PathLike | None = None,
) -> Any:
    """Attach a bottom-up region feature file (n, 36, 2048) to the corpus's images.

    Rows are aligned by order (either precomp layout, see `region_rows_index`) or, with `ids`
    (a list, or a `{split}_ids.txt` file with one id per row or per image), by id.
    """
    array = open_feature_array(path)
    check_region_shape(array, path)
    if isinstance(ids, str | os.PathLike):
        ids = read_id_file(ids)
    if ids is not None:
        ids = _ids_per_row([str(x) for x in ids], int(array.shape[0]), path)
        first_row: dict[str, int] = {}
        for row, item in enumerate(ids):
            first_row.setdefault(item, row)
        missing = [x for x in corpus.image_ids if str(x) not in first_row]
        if missing:
            raise MissingInputError(
                f"{name}: {len(missing)} corpus images are not in the id list of {path} (e.g. {missing[:3]})"
            )
        index = np.array([first_row[str(x)] for x in corpus.image_ids], dtype=np.int64)
        return corpus.with_features(name, path, modality="image", index=index)
    return corpus.with_features(name, path, modality="image")


def _ids_per_row(ids: list[str], rows: int, path: str | os.PathLike) -> list[str]:
    """Id lists come per row, per image (rows repeat images) or per caption (ids repeat)."""
    if len(ids) == rows:
        return ids
    if rows > len(ids) and rows % len(ids) == 0:
        return [item for item in ids for _ in range(rows // len(ids))]
    if len(ids) > rows and len(ids) % rows == 0:
        groups = np.asarray(ids, dtype=object).reshape(rows, len(ids) // rows)
        if (groups == groups[:, :1]).all():
            return [str(x) for x in groups[:, 0]]
    raise MissingInputError(f"{path}: {len(ids)} ids do not line up with its {rows} feature rows")


# -- identity of a feature file (for embedding-cache keys) ----------------------------------------
def file_fingerprint(path: str | os.PathLike, key: str | None = None, sample_bytes: int = 1 << 20) -> str:
    """A cheap content fingerprint: size plus sha256 of the first and last `sample_bytes`.

    Reading whole multi-GB region files to key a cache would cost more than it saves; a changed
    feature extraction nearly always changes the head or tail of the file, or its size.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    digest = hashlib.sha256(f"{size}:{key}".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(sample_bytes))
        if size > 2 * sample_bytes:
            handle.seek(size - sample_bytes)
            digest.update(handle.read(sample_bytes))
        elif size > sample_bytes:
            digest.update(handle.read())
    return digest.hexdigest()
