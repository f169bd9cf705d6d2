"""The embedding cache: encoder outputs on disk, resumable block by block.

An entry is one folder per key (model, config, checkpoint sha256, corpus content hash, side,
device / dtype, and any extra such as a feature fingerprint: see `embedding_key`), named by a
sha256 of the key's canonical JSON; the key itself is stored in it and checked on every use.

Work is split into blocks of `block_size` items. Each finished block is written as one .npy per
output (a model returns a tensor, or a dict of tensors) through a temporary file and os.replace,
then a small block record `blocks/<i>.json`, also atomically: a block counts as done only when
its record exists and its arrays open with the recorded shapes. A run killed at any point
restarts from the blocks already finished: nothing is recomputed or lost; stray temporary files
are ignored (and removed when the entry is consolidated).

When every block is done, the blocks are consolidated into one .npy per output (memory-mappable)
and `manifest.json` is written last. Sharded runs (e.g. torch.distributed) call
`encode(..., rank=r, world_size=w)` (block i belongs to rank i % w) and then `consolidate(...,
wait=True)`; one process consolidates (a lock file), the others wait for the manifest.

dtypes: float16/32/64, bfloat16 (stored as its uint16 bit pattern, with the dtype in the
record; `as_torch=True` gives bfloat16 tensors back), int8/16/32/64, uint8, bool.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import ConfigError, DataFormatError, FicoError
from fico_registry.runtime.progress import progress_bar

SINGLE = "__tensor__"  # output name used when encode_block returns one tensor
_NUMPY_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
CACHE_FORMAT = "fico-embedding-cache"
CACHE_VERSION = 1


class CacheIncompleteError(FicoError, RuntimeError):
    """consolidate() was asked for an entry whose blocks are not all encoded yet."""


@dataclass(frozen=True)
class CacheStatus:
    """Where an entry stands: blocks done / missing, and whether it is consolidated."""

    path: Path
    n_items: int | None
    block_size: int | None
    n_blocks: int
    done: tuple[int, ...]
    missing: tuple[int, ...]
    consolidated: bool


def embedding_key(
    *,
    model: str,
    side: str,
    corpus_hash: str,
    config: Mapping[str, Any] | str | None = None,
    checkpoint_sha256: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The standard key of an encoded corpus side ("images" or "texts"); extra: e.g. feature fingerprints."""
    if side not in ("images", "texts"):
        raise ConfigError(f"side must be 'images' or 'texts', got {side!r}")
    key = {
        "model": model,
        "config": config,
        "checkpoint_sha256": checkpoint_sha256,
        "corpus_hash": corpus_hash,
        "side": side,
        "device": device,
        "dtype": dtype,
    }
    key.update(extra)
    return key


def key_digest(key: Mapping[str, Any]) -> str:
    """sha256 of the key's canonical JSON (sorted keys); non-JSON values are refused."""
    return hashlib.sha256(_canonical(key).encode()).hexdigest()


def _canonical(key: Mapping[str, Any]) -> str:
    if not isinstance(key, Mapping) or not key:
        raise ConfigError("a cache key must be a non-empty dict")
    try:
        return json.dumps(key, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"cache key values must be plain JSON (str, int, float, bool, None, lists, dicts): {exc}"
        ) from None


class EmbeddingCache:
    """Encoded outputs stored on disk by key (see the module docstring).

    root: the cache folder (default $FICO_HOME/embeddings).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        if root is None:
            from fico_registry.models.loading import fico_home

            root = fico_home() / "embeddings"
        self.root = Path(root)

    # -- locations -------------------------------------------------------------------------------
    def path(self, key: Mapping[str, Any]) -> Path:
        """The entry folder of `key` (it may not exist yet)."""
        digest = key_digest(key)
        label = "-".join(str(key[k]) for k in ("model", "side") if isinstance(key.get(k), str))
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:60]
        return self.root / (f"{label}-{digest[:24]}" if label else digest[:24])

    # -- main entry points -------------------------------------------------------------------------
    def get_or_encode(
        self,
        key: Mapping[str, Any],
        n_items: int,
        encode_block: Callable[[int, int], Any],
        block_size: int,
        progress: bool = True,
        *,
        as_torch: bool = False,
    ) -> dict[str, Any] | Any:
        """The cached outputs of `key`, encoding (or finishing) them first if needed.

        encode_block(start, stop) returns the outputs of items start..stop-1: a tensor / array
        with stop - start rows, or a dict of them. Returns memory-mapped arrays (a dict if
        encode_block returns dicts), or torch tensors with as_torch=True. progress: a rich bar
        over blocks, shown on a terminal unless FICO_NO_PROGRESS is set.
        """
        cached = self.load(key, as_torch=as_torch)
        if cached is not None:
            return cached
        self.encode(key, n_items, encode_block, block_size, progress=progress)
        return self.consolidate(key, as_torch=as_torch)

    def load(self, key: Mapping[str, Any], *, as_torch: bool = False) -> dict[str, Any] | Any | None:
        """The consolidated outputs of `key`, or None if it is not (completely) cached."""
        folder = self.path(key)
        manifest = _read_json(folder / "manifest.json")
        if manifest is None:
            return None
        self._check_key(folder, key)
        try:
            arrays = {
                name: _open_npy(folder / f"{name}.npy", info, copy_on_write=as_torch)
                for name, info in manifest["outputs"].items()
            }
        except (OSError, ValueError, KeyError):
            # damaged after the fact (files deleted or cut short): drop the manifest, encode again
            (folder / "manifest.json").unlink(missing_ok=True)
            return None
        return _package(arrays, manifest["outputs"], as_torch)

    def encode(
        self,
        key: Mapping[str, Any],
        n_items: int,
        encode_block: Callable[[int, int], Any],
        block_size: int,
        *,
        blocks: Iterable[int] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        progress: bool = True,
    ) -> list[int]:
        """Encode the missing blocks among those assigned to this process; returns their indices.

        blocks: explicit block indices; or rank / world_size: block i belongs to rank i % world_size;
        default: every block. The block size of an existing entry wins over `block_size` (the
        finished blocks define the layout; results do not depend on it).
        """
        if not isinstance(n_items, int) or n_items < 1:
            raise ConfigError(f"n_items must be a positive integer, got {n_items!r}")
        if not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"block_size must be a positive integer, got {block_size!r}")
        folder = self.path(key)
        manifest = _read_json(folder / "manifest.json")
        if manifest is not None:  # already consolidated
            self._check_key(folder, key)
            if manifest["n_items"] != n_items:
                raise DataFormatError(
                    f"{folder.name}: the cached entry has {manifest['n_items']} items, this run {n_items}"
                )
            return []
        layout = self._prepare(folder, key, n_items, block_size)
        block_size = layout["block_size"]
        n_blocks = math.ceil(n_items / block_size)
        if blocks is not None:
            assigned = sorted({int(b) for b in blocks})
            bad = [b for b in assigned if not 0 <= b < n_blocks]
            if bad:
                raise ConfigError(f"block indices {bad[:5]} are outside 0..{n_blocks - 1}")
        elif rank is not None or world_size is not None:
            if rank is None or world_size is None or not 0 <= rank < world_size:
                raise ConfigError(
                    f"pass both rank and world_size with 0 <= rank < world_size (got {rank}, {world_size})"
                )
            assigned = list(range(rank, n_blocks, world_size))
        else:
            assigned = list(range(n_blocks))
        todo = [b for b in assigned if not self._block_done(folder, b)]
        computed = []
        label, done = f"encoding {folder.name}", len(assigned) - len(todo)
        with progress_bar(None if progress else False, label, len(assigned), completed=done) as advance:
            for index in todo:
                start, stop = index * block_size, min((index + 1) * block_size, n_items)
                outputs = _to_numpy_dict(
                    encode_block(start, stop), stop - start, what=f"block {index} ({start}:{stop})"
                )
                self._write_block(folder, index, start, stop, outputs)
                computed.append(index)
                advance()
        return computed

    def consolidate(
        self,
        key: Mapping[str, Any],
        *,
        wait: bool = False,
        timeout: float | None = None,
        poll_seconds: float = 0.5,
        keep_blocks: bool = False,
        as_torch: bool = False,
    ) -> dict[str, Any] | Any:
        """Join all blocks into one .npy per output and write the manifest; returns the outputs.

        wait=True polls until every block is done (other ranks still encoding) or `timeout`
        seconds pass; wait=False raises CacheIncompleteError when blocks are missing.
        """
        folder = self.path(key)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            cached = self.load(key, as_torch=as_torch)
            if cached is not None:
                return cached
            status = self.status(key)
            if status.n_items is None:
                if not wait:
                    raise CacheIncompleteError(f"nothing is encoded yet for {folder.name}")
            elif not status.missing:
                lock = _Lock(folder / "consolidate.lock")
                if lock.acquire():
                    try:
                        if self.load(key) is None:
                            self._consolidate(folder, status, keep_blocks)
                    finally:
                        lock.release()
                    continue
            elif not wait:
                raise CacheIncompleteError(
                    f"{len(status.missing)} of {status.n_blocks} blocks of {folder.name} are not encoded yet "
                    f"(e.g. {list(status.missing[:5])}); run encode() for them, or consolidate(wait=True)"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise CacheIncompleteError(f"timed out after {timeout} s waiting for the blocks of {folder.name}")
            time.sleep(poll_seconds)

    def status(self, key: Mapping[str, Any]) -> CacheStatus:
        folder = self.path(key)
        layout = _read_json(folder / "layout.json")
        consolidated = (folder / "manifest.json").exists()
        if layout is None:
            return CacheStatus(folder, None, None, 0, (), (), consolidated)
        n_blocks = math.ceil(layout["n_items"] / layout["block_size"])
        done = tuple(b for b in range(n_blocks) if consolidated or self._block_done(folder, b))
        missing = tuple(sorted(set(range(n_blocks)) - set(done)))
        return CacheStatus(folder, layout["n_items"], layout["block_size"], n_blocks, done, missing, consolidated)

    def remove(self, key: Mapping[str, Any]) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)

    # -- internals ---------------------------------------------------------------------------------
    def _check_key(self, folder: Path, key: Mapping[str, Any]) -> None:
        stored = _read_json(folder / "key.json")
        if stored is not None and _canonical(stored) != _canonical(key):
            raise DataFormatError(f"{folder}: holds another key (a hash collision or an edited folder); remove it")

    def _prepare(self, folder: Path, key: Mapping[str, Any], n_items: int, block_size: int) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "blocks").mkdir(exist_ok=True)
        if not (folder / "key.json").exists():
            _atomic_write_text(folder / "key.json", json.dumps(dict(key), sort_keys=True, indent=1))
        self._check_key(folder, key)
        layout = _read_json(folder / "layout.json")
        if layout is None:
            layout = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "n_items": n_items, "block_size": block_size}
            _atomic_write_text(folder / "layout.json", json.dumps(layout))
            layout = _read_json(folder / "layout.json") or layout  # a concurrent writer may have won
        if layout["n_items"] != n_items:
            raise DataFormatError(
                f"{folder.name}: the cached entry has {layout['n_items']} items, this run {n_items}; the key does "
                f"not identify the corpus (add the corpus content hash to it)"
            )
        return layout

    def _block_done(self, folder: Path, index: int) -> bool:
        record = _read_json(folder / "blocks" / f"{index:08d}.json")
        if record is None:
            return False
        try:
            for name, info in record["outputs"].items():
                _open_npy(folder / "blocks" / f"{index:08d}.{name}.npy", info)
        except (OSError, ValueError, KeyError):
            return False  # a damaged block is encoded again
        return True

    def _write_block(
        self, folder: Path, index: int, start: int, stop: int, outputs: dict[str, tuple[np.ndarray, str]]
    ) -> None:
        record: dict[str, Any] = {"index": index, "start": start, "stop": stop, "outputs": {}}
        for name, (array, dtype_name) in outputs.items():
            _atomic_save_npy(folder / "blocks" / f"{index:08d}.{name}.npy", array)
            record["outputs"][name] = {"dtype": dtype_name, "shape": list(array.shape)}
        # the record goes last: without it the block does not count
        _atomic_write_text(folder / "blocks" / f"{index:08d}.json", json.dumps(record))

    def _consolidate(self, folder: Path, status: CacheStatus, keep_blocks: bool) -> None:
        records = [_read_json(folder / "blocks" / f"{b:08d}.json") for b in range(status.n_blocks)]
        first = records[0]
        assert first is not None and status.n_items is not None
        outputs: dict[str, dict[str, Any]] = {}
        for record in records:
            assert record is not None
            if set(record["outputs"]) != set(first["outputs"]):
                raise DataFormatError(
                    f"{folder.name}: block {record['index']} has outputs {sorted(record['outputs'])}, block 0 has "
                    f"{sorted(first['outputs'])}; encode_block must return the same outputs for every block"
                )
        for name, info in first["outputs"].items():
            trailing = info["shape"][1:]
            for record in records:
                assert record is not None
                other = record["outputs"][name]
                if other["dtype"] != info["dtype"] or other["shape"][1:] != trailing:
                    raise DataFormatError(
                        f"{folder.name}: block {record['index']} output {name!r} is {other} but block 0's is {info}; "
                        f"encode_block must return the same dtypes and trailing shapes for every block"
                    )
            outputs[name] = {"dtype": info["dtype"], "shape": [status.n_items, *trailing]}
        for name, info in outputs.items():
            storage = _storage_dtype(info["dtype"])
            tmp = folder / f"{name}.npy.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=storage, shape=tuple(info["shape"]))
            for record in records:
                assert record is not None
                block = _open_npy(folder / "blocks" / f"{record['index']:08d}.{name}.npy", record["outputs"][name])
                target[record["start"] : record["stop"]] = block
            target.flush()
            del target
            os.replace(tmp, folder / f"{name}.npy")
        manifest = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "n_items": status.n_items,
            "block_size": status.block_size,
            "outputs": outputs,
        }
        _atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1))
        if not keep_blocks:
            shutil.rmtree(folder / "blocks", ignore_errors=True)
        for stray in folder.glob("*.tmp-*"):
            stray.unlink(missing_ok=True)


# -- arrays ----------------------------------------------------------------------------------------
def _to_numpy_dict(value: Any, rows: int, *, what: str) -> dict[str, tuple[np.ndarray, str]]:
    """encode_block's result as {name: (numpy array for storage, dtype name)}."""
    if isinstance(value, Mapping):
        if not value:
            raise ConfigError(f"{what}: encode_block returned an empty dict")
        items = {str(k): v for k, v in value.items()}
        bad = [k for k in items if not re.fullmatch(r"[A-Za-z0-9_.-]+", k) or k == SINGLE]
        if bad:
            raise ConfigError(f"{what}: output names must be letters, digits, '_', '.', '-': {bad}")
    else:
        items = {SINGLE: value}
    converted = {}
    for name, item in items.items():
        array, dtype_name = _as_numpy(item, what=f"{what} output {name!r}")
        if array.ndim == 0 or array.shape[0] != rows:
            raise ConfigError(f"{what} output {name!r}: expected {rows} rows, got shape {array.shape}")
        converted[name] = (array, dtype_name)
    return converted


def _as_numpy(item: Any, *, what: str) -> tuple[np.ndarray, str]:
    if hasattr(item, "detach") and hasattr(item, "dtype"):  # a torch tensor (torch imported by the caller)
        import torch

        tensor = item.detach().to("cpu")
        if tensor.dtype == torch.bfloat16:
            return tensor.contiguous().view(torch.int16).numpy().view(np.uint16), "bfloat16"
        array = tensor.contiguous().numpy()
    else:
        array = np.asarray(item)
    name = array.dtype.name
    if name not in _NUMPY_DTYPES:
        raise ConfigError(f"{what}: dtype {name} cannot be cached (use one of {', '.join(_NUMPY_DTYPES)}, bfloat16)")
    return np.ascontiguousarray(array), name


def _storage_dtype(dtype_name: str) -> np.dtype:
    return np.dtype(np.uint16) if dtype_name == "bfloat16" else np.dtype(dtype_name)


def _open_npy(path: Path, info: Mapping[str, Any], *, copy_on_write: bool = False) -> np.ndarray:
    array = np.load(path, mmap_mode="c" if copy_on_write else "r", allow_pickle=False)
    if list(array.shape) != list(info["shape"]) or array.dtype != _storage_dtype(info["dtype"]):
        raise ValueError(f"{path}: shape {array.shape} / dtype {array.dtype} differ from the record {info}")
    return array


def _package(arrays: dict[str, np.ndarray], outputs: Mapping[str, Any], as_torch: bool) -> dict[str, Any] | Any:
    if as_torch:
        import torch

        tensors = {}
        for name, array in arrays.items():
            tensor = torch.from_numpy(array)
            if outputs[name]["dtype"] == "bfloat16":
                tensor = tensor.view(torch.int16).view(torch.bfloat16)
            tensors[name] = tensor
        result: dict[str, Any] = tensors
    else:
        result = dict(arrays)
    return result[SINGLE] if set(result) == {SINGLE} else result


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen a cached bfloat16 output (its uint16 bit pattern) to float32, without torch."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# -- files -----------------------------------------------------------------------------------------
def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = _tmp_name(path)
    with open(tmp, "wb") as handle:
        np.lib.format.write_array(handle, array, allow_pickle=False)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = _tmp_name(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None


class _Lock:
    """An exclusive lock file holding the owner's host and pid; a dead local owner's lock is broken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False

    def acquire(self) -> bool:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._owner_alive():
                    return False
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{socket.gethostname()} {os.getpid()}")
            self.held = True
            return True
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def _owner_alive(self) -> bool:
        try:
            host, pid_text = self.path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return True  # being written right now
        if host != socket.gethostname() or pid <= 0:
            return True  # cannot check another machine's processes
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
