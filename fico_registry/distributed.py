"""torch.distributed helpers: who am I, how many of us, and whether to print."""

from __future__ import annotations

import os


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


def is_main_process() -> bool:
    """Only rank 0 prints tables and writes reports."""
    return rank() == 0
