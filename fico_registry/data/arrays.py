"""Read user-supplied arrays (.npy, .npz, .pt, .safetensors) without ever unpickling.

Embeddings, codes, score matrices and caption maps reach the CLI and the leaderboard as files
written by other people's code. Each format is opened with its safe reader: numpy with
allow_pickle=False (a pickled object array is refused, not loaded), torch with weights_only=True,
safetensors as it is (it cannot hold code). A file holding several arrays needs `key`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import DataFormatError

SUPPORTED = (".npy", ".npz", ".pt", ".pth", ".safetensors")


def split_key(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """'file.npz:images' -> (Path('file.npz'), 'images'); a plain path has no key."""
    text = os.fspath(spec)
    for suffix in SUPPORTED:
        marker = suffix + ":"
        if marker in text:
            head, _, key = text.rpartition(marker)
            return Path(head + suffix), key or None
    return Path(text), None


def read_array(spec: str | os.PathLike, key: str | None = None, *, mmap: bool = True) -> np.ndarray:
    """The array in `spec` ('path' or 'path:key'); .npy files are memory-mapped when `mmap`."""
    path, inline_key = split_key(spec)
    key = key or inline_key
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _not_a_scalar(_read_npy(path, mmap), path)
    if suffix == ".npz":
        return _not_a_scalar(_pick(_read_npz(path), key, path), path)
    if suffix in (".pt", ".pth"):
        return _not_a_scalar(_pick(_read_torch(path), key, path), path)
    if suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(path))
        except Exception as exc:  # the library raises its own types for corrupt headers
            raise DataFormatError(f"{path}: not a readable safetensors file ({exc})") from exc
        return _not_a_scalar(_pick(arrays, key, path), path)
    raise DataFormatError(f"{path}: unsupported format {suffix or '(no suffix)'}; use one of {', '.join(SUPPORTED)}")


def _not_a_scalar(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 0:
        raise DataFormatError(f"{path}: holds a single number (a 0-d array); save the array of rows itself")
    return array


def _check_magic(path: Path, magic: bytes, kind: str, how: str) -> None:
    """Refuse empty files and files of another format before numpy guesses they are pickles."""
    with open(path, "rb") as fh:
        head = fh.read(len(magic))
    if not head:
        raise DataFormatError(f"{path}: the file is empty (0 bytes), not a {kind} file; write it again with {how}")
    if head != magic:
        raise DataFormatError(
            f"{path}: not a valid {kind} file (it does not start with the {kind} header); save it with {how}"
        )


def _read_npy(path: Path, mmap: bool) -> np.ndarray:
    _check_magic(path, b"\x93NUMPY", ".npy", "numpy.save")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (EOFError, OSError) as exc:  # a header without its data (truncated file)
        raise DataFormatError(f"{path}: not a readable .npy file ({exc}); the file may be truncated") from exc
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "python objects" in str(exc).lower():
            raise DataFormatError(
                f"{path}: holds Python objects (a pickled object array); save a numeric array instead"
            ) from exc
        raise DataFormatError(f"{path}: not a readable .npy file ({exc})") from exc


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    _check_magic(path, b"PK", ".npz", "numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:
        raise DataFormatError(f"{path}: an entry holds Python objects or is unreadable ({exc})") from exc


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataFormatError(
            f"{path}: holds objects other than tensors, which are not loaded (safety); save a tensor or a dict of "
            "tensors"
        ) from exc
    if isinstance(obj, torch.Tensor):
        return {"": _tensor_to_numpy(obj)}
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(k): _tensor_to_numpy(v) for k, v in obj.items()}
    raise DataFormatError(f"{path}: expected a tensor or a dict of tensors, got {type(obj).__name__}")


def _tensor_to_numpy(t: Any) -> np.ndarray:
    import torch

    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every bf16 value exactly
        t = t.float()
    return t.detach().cpu().numpy()


def _pick(arrays: dict[str, np.ndarray], key: str | None, path: Path) -> np.ndarray:
    if key is not None:
        if key not in arrays:
            raise DataFormatError(f"{path}: no array named {key!r}; it has: {', '.join(sorted(arrays)) or 'none'}")
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise DataFormatError(
        f"{path}: holds {len(arrays)} arrays ({', '.join(sorted(arrays))}); name one as {path}:<name>"
    )
