"""Evidence files: the arrays a submission's metrics are recomputed from.

Only two formats are accepted, both plain data: NumPy .npy (read with allow_pickle=False,
after checking its header says a numeric dtype) and safetensors (a JSON header plus raw bytes).
A file's type is decided by its first bytes, never by its name: a pickle, zip archive (.npz,
torch .pt) or executable renamed to .npy is recognised and refused before anything parses it.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fico_registry.errors import DataFormatError, ShapeError
from fico_registry.results.record import EvidenceFile

NPY_MAGIC = b"\x93NUMPY"
MAX_SAFETENSORS_HEADER = 1 << 20
# numeric dtypes only: no objects (pickles), strings, structured or complex arrays
NUMERIC_KINDS = "biuf"
SAFETENSORS_DTYPES = {
    "BOOL": "|b1", "U8": "|u1", "I8": "|i1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
    "F16": "<f2", "F32": "<f4", "F64": "<f8",
}  # fmt: skip


class EvidenceError(DataFormatError):
    """An evidence file is not an acceptable array file (wrong type, unsafe, corrupt, mis-sized)."""


@dataclass(frozen=True)
class ArrayInfo:
    """What a file's header says: shape, dtype and where the raw data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int
    fortran_order: bool = False


# leading bytes of the kinds of file that are refused, named so the submitter knows what they sent
_OTHER_MAGIC: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"PK\x03\x04", b"PK\x05\x06"), "a zip archive (.npz, torch .pt or similar)"),
    ((b"\x7fELF",), "an ELF executable"),
    ((b"MZ",), "a Windows executable"),
    ((b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"), "a Mach-O executable"),
    ((b"#!",), "a script"),
    ((b"\x89HDF",), "an HDF5 file"),
)


def sniff(head: bytes) -> str:
    """The kind of file from its first bytes: 'npy', 'safetensors', or a description of what else it is."""
    if head.startswith(NPY_MAGIC):
        return "npy"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle data"
    for magics, kind in _OTHER_MAGIC:
        if head.startswith(magics):
            return kind
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= MAX_SAFETENSORS_HEADER:
            return "safetensors"
    return "an unrecognised format"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _read_head(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.hasobject:
        raise EvidenceError(
            f"{name} holds Python objects (an object array needs unpickling, which is never done); save a numeric array"
        )
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise EvidenceError(
            f"{name} has dtype {dtype}; evidence must be a plain numeric array (bool, int, uint or float)"
        )


def inspect_npy(path: Path) -> ArrayInfo:
    """Parse a .npy header (a Python literal read by numpy's safe parser) without loading data."""
    from numpy.lib import format as npy_format

    size = path.stat().st_size
    with open(path, "rb") as handle:
        try:
            version = npy_format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(handle)
            else:
                raise EvidenceError(f"{path.name}: .npy format version {version} is not accepted (use 1.0 or 2.0)")
        except EvidenceError:
            raise
        except Exception as exc:  # numpy raises ValueError / SyntaxError variants for bad headers
            raise EvidenceError(f"{path.name}: not a readable .npy header ({exc})") from None
        offset = handle.tell()
    _check_dtype(dtype, path.name)
    expected = offset + math.prod(shape) * dtype.itemsize
    if expected != size:
        raise EvidenceError(
            f"{path.name}: the header describes {expected} bytes but the file has {size} (truncated or padded)"
        )
    return ArrayInfo(tuple(int(d) for d in shape), dtype, offset, bool(fortran))


def inspect_safetensors(path: Path, tensor: str | None) -> tuple[str, ArrayInfo]:
    """Parse a safetensors header (strict JSON) and check the named tensor's bytes lie in the file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise EvidenceError(f"{path.name}: too short to be a safetensors file")
        n = int.from_bytes(prefix, "little")
        if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise EvidenceError(f"{path.name}: safetensors header length {n} is implausible for a {size}-byte file")
        raw = handle.read(n)
    from fico_registry.results.record import loads_strict

    try:
        header = loads_strict(raw.decode("utf-8"), f"{path.name} header")
    except (UnicodeDecodeError, DataFormatError) as exc:
        raise EvidenceError(f"{path.name}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise EvidenceError(f"{path.name}: safetensors header is not a JSON object")
    names = [k for k in header if k != "__metadata__"]
    if tensor is None:
        if len(names) != 1:
            raise EvidenceError(f"{path.name}: holds {len(names)} tensors; name the one to use")
        tensor = names[0]
    entry = header.get(tensor)
    if tensor == "__metadata__" or not isinstance(entry, dict):
        raise EvidenceError(f"{path.name}: no tensor named {tensor!r} (it has: {', '.join(sorted(names)) or 'none'})")
    dtype_name, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype_name not in SAFETENSORS_DTYPES:
        raise EvidenceError(
            f"{path.name}: tensor dtype {dtype_name!r} is not accepted (use one of {', '.join(SAFETENSORS_DTYPES)})"
        )
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise EvidenceError(f"{path.name}: malformed shape {shape!r}")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise EvidenceError(f"{path.name}: malformed data_offsets {offsets!r}")
    dtype = np.dtype(SAFETENSORS_DTYPES[dtype_name])
    start, end = offsets
    data_start = 8 + n
    if not (0 <= start <= end and data_start + end <= size and end - start == math.prod(shape) * dtype.itemsize):
        raise EvidenceError(
            f"{path.name}: tensor {tensor!r} bytes [{start}, {end}) do not match its shape {shape} "
            f"and dtype {dtype_name}"
        )
    return tensor, ArrayInfo(tuple(shape), dtype, data_start + start)


def inspect(path: Path, fmt: str, tensor: str | None = None) -> tuple[str | None, ArrayInfo]:
    """Check that the file's bytes are the declared format and parse its header."""
    kind = sniff(_read_head(path))
    if kind != fmt:
        if kind == "pickle data":
            raise EvidenceError(f"{path.name} is pickle data, not {fmt}: pickles can run code and are never loaded")
        raise EvidenceError(
            f"{path.name} is {kind}, not a {fmt} file (file types are decided by their content, not their names)"
        )
    if fmt == "npy":
        return None, inspect_npy(path)
    return inspect_safetensors(path, tensor)


def open_array(path: Path, info: ArrayInfo) -> np.ndarray:
    """The checked array as a read-only memory map (nothing is parsed beyond the header); a
    big-endian or Fortran-ordered file is copied into native C order."""
    if math.prod(info.shape) == 0:
        return np.zeros(info.shape, dtype=info.dtype)
    order: Literal["C", "F"] = "F" if info.fortran_order else "C"
    array = np.memmap(path, dtype=info.dtype, mode="r", offset=info.data_offset, shape=info.shape, order=order)
    if info.fortran_order or not info.dtype.isnative:  # torch reads only native, C-ordered memory
        return np.ascontiguousarray(array, dtype=info.dtype.newbyteorder("="))
    return array


# -- writing (fico submit) ------------------------------------------------------------------------
def as_numeric_array(value: Any, name: str) -> np.ndarray:
    """A numpy array from an array or tensor, refusing objects and non-numeric dtypes."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    _check_dtype(array.dtype, name)
    return array


def write_evidence(array: np.ndarray, folder: Path, role: str, fmt: str) -> EvidenceFile:
    """Write one evidence array as <role>.npy or <role>.safetensors and describe it."""
    if fmt not in ("npy", "safetensors"):
        raise DataFormatError(f"evidence format must be 'npy' or 'safetensors', got {fmt!r}")
    array = np.ascontiguousarray(array)
    target = folder / f"{role}.{fmt}"
    tmp = folder / f".{role}.tmp-{os.getpid()}.{fmt}"
    if fmt == "npy":
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
    else:
        from safetensors.numpy import save_file

        save_file({role: array}, str(tmp))
    tmp.replace(target)
    return EvidenceFile(
        file=target.name,
        format=fmt,
        tensor=role if fmt == "safetensors" else None,
        sha256=sha256_file(target),
        shape=[int(d) for d in array.shape],
        dtype=str(array.dtype),
        bytes=target.stat().st_size,
    )


# -- shapes against the ground truth -------------------------------------------------------------
def check_shapes(
    kind: str, shapes: dict[str, tuple[int, ...]], n_images: int, n_texts: int, measure: str | None
) -> None:
    """Evidence shapes must match the corpus: one row per image / caption, matrices (images x texts)."""
    if kind == "cascade":
        from fico_registry.leaderboard.cascade_entry import check_cascade_shapes

        check_cascade_shapes(shapes, n_images, n_texts, measure)
        return
    if kind == "embeddings":
        img, txt = shapes["images"], shapes["texts"]
        if img[0] != n_images:
            raise ShapeError(f"images evidence has {img[0]} rows but the corpus has {n_images} images")
        if txt[0] != n_texts:
            raise ShapeError(f"texts evidence has {txt[0]} rows but the corpus has {n_texts} captions")
        want_img_dims = 3 if measure == "maxsim" else 2
        if len(img) != want_img_dims or len(txt) != 2:
            raise ShapeError(
                f"with measure {measure!r} images must be {want_img_dims}-d and texts 2-d; "
                f"got images {img}, texts {txt}"
            )
        if img[-1] != txt[-1]:
            raise ShapeError(f"images have width {img[-1]} but texts have width {txt[-1]}")
        return
    if shapes["i2t"] != (n_images, n_texts):
        raise ShapeError(f"i2t must be (n_images, n_texts) = {(n_images, n_texts)}, got {shapes['i2t']}")
    if "t2i" in shapes and shapes["t2i"] != (n_texts, n_images):
        raise ShapeError(f"t2i must be (n_texts, n_images) = {(n_texts, n_images)}, got {shapes['t2i']}")


def bytes_per_item(
    kind: str, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, np.dtype], bits: int | None
) -> dict[str, float | None]:
    """Storage of one indexed item as submitted: codes count ceil(bits / 8) bytes, floats width x itemsize."""
    if kind not in ("embeddings", "cascade"):  # a cascade stores its first stage's outputs
        return {"images": None, "texts": None}
    out: dict[str, float | None] = {}
    for role in ("images", "texts"):
        if bits:
            out[role] = float(math.ceil(bits / 8))
        else:
            out[role] = float(math.prod(shapes[role][1:]) * dtypes[role].itemsize)
    return out


def describe_file(path: Path) -> str:
    """What an unexpected file is, for a rejection reason."""
    try:
        kind = sniff(_read_head(path))
    except OSError:
        return "unreadable"
    return kind


__all__ = [
    "ArrayInfo",
    "EvidenceError",
    "as_numeric_array",
    "bytes_per_item",
    "check_shapes",
    "describe_file",
    "inspect",
    "open_array",
    "sha256_file",
    "sniff",
    "write_evidence",
]
