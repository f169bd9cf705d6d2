"""Encode one side of a corpus with a model, in batches, through the embedding cache, timed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fico_registry.models.inputs import InputSource


@dataclass
class EncodeResult:
    """Encoder outputs of a whole side (tensor or dict of tensors, on the CPU) and what it cost."""

    outputs: Any
    items: int
    seconds: float  # wall time of the encoder calls (0 when everything came from the cache)
    from_cache: bool
    batches: int = 0
    batch_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.outputs)

    def cost(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 6),
            "items": self.items,
            "items_per_s": None if self.seconds <= 0 else round(self.items / self.seconds, 3),
            "from_cache": self.from_cache,
            "batch_size": self.batch_size,
            "bytes": self.nbytes,
            "bytes_per_item": round(self.nbytes / max(1, self.items), 3),
        }


def tensor_bytes(outputs: Any) -> int:
    if isinstance(outputs, dict):
        return sum(tensor_bytes(v) for v in outputs.values())
    if isinstance(outputs, torch.Tensor):
        return outputs.element_size() * outputs.numel()
    if isinstance(outputs, np.ndarray):
        return int(outputs.nbytes)
    return 0


def _to_cpu(out: Any) -> Any:
    if isinstance(out, dict):
        return {k: _to_cpu(v) for k, v in out.items()}
    return out.detach().cpu() if isinstance(out, torch.Tensor) else out


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts, dim=0)


def _as_torch(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_torch(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value


@dataclass
class _EncodeTimer:
    """What the encoder calls of one side cost so far (mutated by the block encoder)."""

    seconds: float = 0.0
    batches: int = 0
    items: int = 0


def encode_side(
    model: Any,
    source: InputSource,
    side: str,
    *,
    batch_size: int,
    cache: Any = None,
    cache_key: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> EncodeResult:
    """Encode every item of `source` ("image" or "text" side) in batches of `batch_size`."""
    encode_block = _BlockEncoder(model, source, side, batch_size)
    n = source.n
    if cache is None or cache_key is None:
        outputs = _concat(encode_block.all_blocks(0, n, progress, f"encoding {side}s ({model.name})"))
        return EncodeResult(outputs, n, encode_block.seconds, False, encode_block.batches, batch_size)
    shown = bool(progress) if progress is not None else True
    outputs = cache.get_or_encode(cache_key, n, encode_block, block_size=batch_size * 4, progress=shown, as_torch=True)
    from_cache = encode_block.batches == 0
    if from_cache:
        cache_notice(cache, cache_key, n, side, progress)
    return EncodeResult(_as_torch(outputs), n, encode_block.seconds, from_cache, encode_block.batches, batch_size)


class _BlockEncoder:
    """Encodes items [start, stop) of one side in batches; times only the encoder calls.

    Called with one block (what the embedding cache asks for), or over a range in blocks of
    4 batches with a progress bar (`all_blocks`).
    """

    def __init__(self, model: Any, source: InputSource, side: str, batch_size: int) -> None:
        self.encode = model.encode_images if side == "image" else model.encode_texts
        self.source = source
        self.batch_size = batch_size
        self.seconds = 0.0
        self.batches = 0
        self.items = 0

    def __call__(self, start: int, stop: int) -> Any:
        parts = []
        for s in range(start, stop, self.batch_size):
            batch = self.source.batch(s, min(stop, s + self.batch_size))
            began = time.perf_counter()
            with torch.inference_mode():
                out = self.encode(batch)
            _synchronise(out)
            self.seconds += time.perf_counter() - began
            self.batches += 1
            parts.append(_to_cpu(out))
        self.items += stop - start
        return _concat(parts)

    def all_blocks(self, lo: int, hi: int, progress: bool | None, label: str) -> list[Any]:
        from fico_registry.runtime.progress import progress_bar

        block = self.batch_size * 4
        parts = []
        with progress_bar(progress, label, hi - lo) as advance:
            for s in range(lo, hi, block):
                stop = min(hi, s + block)
                parts.append(self(s, stop))
                advance(stop - s)
        return parts


def cache_notice(cache: Any, cache_key: dict[str, Any], n: int, side: str, progress: bool | None) -> None:
    """One line on stderr when a side comes from the cache (not only `from_cache` in the JSON): the
    numbers then come from an earlier run, and the key folder tells which (progress=False: silent)."""
    if progress is False:
        return
    import sys

    sys.stderr.write(f"{n} {side} embeddings from cache (key {cache.path(cache_key).name}; --no-cache to re-encode)\n")


def _synchronise(out: Any) -> None:
    """Wait for the GPU so the timer measures the work, not the launch."""
    first = next(iter(out.values())) if isinstance(out, dict) else out
    if isinstance(first, torch.Tensor) and first.is_cuda:
        torch.cuda.synchronize(first.device)


def encode_side_sharded(
    model: Any,
    source: InputSource,
    side: str,
    sharding: Any,
    *,
    batch_size: int,
    cache: Any = None,
    cache_key: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> EncodeResult:
    """encode_side split over the ranks of a torch.distributed job (fico_registry.evaluator.sharded.Sharding).

    Every rank gets every output. With the cache, rank r encodes blocks r, r + world_size, ... of
    the shared entry (a restarted rank resumes from the finished blocks) and all ranks then read
    the consolidated entry. Without it, each rank encodes a contiguous slice cut at batch
    boundaries (each batch is the one a single process encodes) and the slices are all_gathered.
    `extra["encoded_items"]` counts the items this rank encoded itself.
    """
    from fico_registry.runtime.distributed import split

    encode_block = _BlockEncoder(model, source, side, batch_size)
    n = source.n
    shown = progress if sharding.rank == 0 else False
    error: BaseException | None = None
    if cache is not None and cache_key is not None:
        try:
            cache.encode(
                cache_key,
                n,
                encode_block,
                block_size=batch_size * 4,
                rank=sharding.rank,
                world_size=sharding.world_size,
                progress=bool(shown) if shown is not None else True,
            )
        except Exception as exc:
            error = exc
        sharding.raise_if_any_failed(error)  # from here on every block is on disk somewhere
        if cache.load(cache_key) is None and cache.status(cache_key).missing and cache.load(cache_key) is None:
            from fico_registry.errors import ConfigError

            raise ConfigError(
                f"rank {sharding.rank} cannot see the blocks the other ranks encoded into {cache.path(cache_key)}: the "
                "embedding cache must be on a filesystem shared by all nodes (set FICO_HOME), or run with "
                "--no-cache / cache=False"
            )
        outputs = cache.consolidate(cache_key, wait=True, poll_seconds=0.1, as_torch=True)
        if encode_block.items == 0 and sharding.rank == 0:
            cache_notice(cache, cache_key, n, side, shown)
        return EncodeResult(
            _as_torch(outputs),
            n,
            encode_block.seconds,
            encode_block.items == 0,
            encode_block.batches,
            batch_size,
            extra={"encoded_items": encode_block.items},
        )
    lo, hi = split(n, sharding.world_size, sharding.rank, align=batch_size)
    part = None
    try:
        parts = encode_block.all_blocks(lo, hi, shown, f"encoding {side}s ({model.name}, rank slice)")
        part = _concat(parts) if parts else None
    except Exception as exc:
        error = exc
    sharding.raise_if_any_failed(error)
    # a rank with no items learns the outputs' names, dtypes and widths from the others
    layouts = sharding.all_gather_object(None if part is None else _layout(part))
    layout = next(item for item in layouts if item is not None)
    if part is None:
        part = _empty_like_layout(layout)
    slices = (split(n, sharding.world_size, r, align=batch_size) for r in range(sharding.world_size))
    counts = [b - a for a, b in slices]
    if isinstance(part, dict):
        outputs = {k: sharding.gather_rows(part[k], counts) for k in sorted(part)}
        outputs = {k: outputs[k] for k in part}
    else:
        outputs = sharding.gather_rows(part, counts)
    return EncodeResult(
        outputs,
        n,
        encode_block.seconds,
        False,
        encode_block.batches,
        batch_size,
        extra={"encoded_items": encode_block.items},
    )


def _layout(outputs: Any) -> Any:
    if isinstance(outputs, dict):
        return {k: _layout(v) for k, v in outputs.items()}
    return (str(outputs.dtype).replace("torch.", ""), tuple(outputs.shape[1:]))


def _empty_like_layout(layout: Any) -> Any:
    if isinstance(layout, dict):
        return {k: _empty_like_layout(v) for k, v in layout.items()}
    dtype, trailing = layout
    return torch.empty((0, *trailing), dtype=getattr(torch, dtype))
