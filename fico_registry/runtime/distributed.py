"""torch.distributed set-up, one home for the evaluator and `fico train`: who am I, how many of us,
whether to print, joining torchrun's process group and leaving it.

This module imports torch only inside functions: rank() and friends stay cheap for the CLI.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from fico_registry.errors import ConfigError, FicoError

_local_only: ContextVar[bool] = ContextVar("fico_local_only", default=False)


class RankFailedError(FicoError, RuntimeError):
    """Another rank of the job failed; its error is in the message (and in its own log)."""


# -- who am I -------------------------------------------------------------------------------------


def _initialised():  # -> module | None
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def rank() -> int:
    dist = _initialised()
    return dist.get_rank() if dist else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    dist = _initialised()
    return dist.get_world_size() if dist else int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Only rank 0 prints tables and writes reports."""
    return rank() == 0


def launched() -> bool:
    """Started by torchrun (or another launcher) with WORLD_SIZE > 1."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(text) > 1
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={text!r} is not an integer") from None


launched_by_torchrun = launched  # the name `fico train` used


@contextmanager
def local() -> Iterator[None]:
    """Evaluate in this process alone, even inside a torchrun job.

    For code that calls the evaluator on one rank only (e.g. `if rank == 0: evaluate(...)`):
    without this the other ranks would never join the collectives and rank 0 would wait.
    """
    token = _local_only.set(True)
    try:
        yield
    finally:
        _local_only.reset(token)


def active() -> bool:
    """A process group with more than one rank is initialised and sharding is not switched off."""
    return not _local_only.get() and _initialised() is not None and world_size() > 1


def split(n: int, parts: int, index: int, align: int = 1) -> tuple[int, int]:
    """Contiguous, near-equal slice `index` of range(n) in `parts`, cut at multiples of `align`."""
    units = -(-n // align)
    lo = units * index // parts
    hi = units * (index + 1) // parts
    return min(n, lo * align), min(n, hi * align)


# -- joining and leaving the group ----------------------------------------------------------------


def join_process_group(on_cuda: bool) -> int | None:
    """Join the launcher's process group (unless one exists); returns the CUDA device index taken, or None.

    gloo on CPU. On CUDA the rank takes GPU LOCAL_RANK (modulo the GPUs it sees, for launchers that
    show each process one GPU) and the group gets both backends, "cpu:gloo,cuda:nccl": NCCL for
    CUDA tensors, gloo for CPU ones (object exchanges, CPU-side counts).
    """
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing and _initialised() is None:
        raise ConfigError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} but {', '.join(missing)} not set: launch with "
            "`torchrun --nproc-per-node N -m fico_registry ...` (it sets them), or unset WORLD_SIZE"
        )
    import torch
    import torch.distributed as dist

    gpu = None
    if on_cuda:
        if not torch.cuda.is_available():
            raise ConfigError("a CUDA device was requested but torch sees none; use device='cpu'")
        gpu = local_rank() % torch.cuda.device_count()
        torch.cuda.set_device(gpu)
    if not dist.is_initialized():
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if on_cuda and dist.is_nccl_available() else "gloo")
    return gpu


def init_if_launched(device: Any = "auto") -> bool:
    """The evaluator's entry: join the launcher's group if WORLD_SIZE > 1 and none exists; True when sharding applies.

    Uses CUDA when torch sees it, unless device is "cpu"; the group is left at exit.
    """
    if _local_only.get():
        return False
    if _initialised() is not None:
        return world_size() > 1
    if not launched():
        return False
    import torch

    join_process_group(torch.cuda.is_available() and not str(device).startswith("cpu"))
    atexit.register(_destroy)
    return world_size() > 1


def init_process_group(device: str) -> str:
    """`fico train`'s entry: join the torchrun job; returns this rank's device ("cuda:N" when on CUDA)."""
    import torch

    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    gpu = join_process_group(on_cuda)
    if gpu is not None:
        return f"cuda:{gpu}"
    return "cpu" if device == "auto" else device


def _destroy() -> None:
    dist = _initialised()
    if dist is not None:
        dist.destroy_process_group()


destroy = _destroy  # leave the group (no-op when none is initialised)


def barrier() -> None:
    dist = _initialised()
    if dist is not None:
        dist.barrier()


def broadcast_object(value: Any) -> Any:
    """Rank 0's value on every rank (e.g. whether this epoch's model is the best)."""
    dist = _initialised()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
