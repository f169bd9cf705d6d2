"""Checks of the evaluator's options: Ks, devices, the memory budget's share per direction."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from fico_registry.errors import MemoryBudgetError, OptionError
from fico_registry.runtime.devices import DEVICE_HELP, checked_device  # noqa: F401  (their old home)
from fico_registry.runtime.sizes import format_size

# the tie formulas compute k - g and binomials in int64: any K this large already means "everything"
MAX_K = 1 << 62


def checked_ks(ks: Any, name: str, *, allow_none: bool) -> tuple[int | None, ...]:
    """ks as a tuple of positive ints (None allowed for map_ks: the whole ranking); a bare K is (K,)."""
    if ks is None and allow_none:
        return (None,)
    if isinstance(ks, (int, np.integer, float, np.floating)) and not isinstance(ks, bool):
        ks = (ks,)
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise OptionError(f"{name} must be a sequence of positive integers such as (1, 5, 10), got {ks!r}")
    out: list[int | None] = []
    for k in ks:
        out.append(_checked_k(k, name, allow_none))
    return tuple(out)


def _checked_k(k: Any, name: str, allow_none: bool) -> int | None:
    whole = " or None (the whole ranking)" if allow_none else ""
    if k is None and allow_none:
        return None
    if isinstance(k, (float, np.floating)):
        hint = f"; write {int(k)}" if float(k).is_integer() else ""
        raise OptionError(f"{name}: K must be an integer, got the float {k!r}{hint}")
    try:
        value = operator.index(k) if not isinstance(k, bool) else None
    except TypeError:
        value = None
    if value is None:
        raise OptionError(f"{name} must hold positive integers{whole}, got {k!r}")
    if value < 1:
        raise OptionError(f"{name} must hold positive integers{whole}, got {value}")
    if value >= MAX_K:
        raise OptionError(
            f"{name}: K = {value} is too large (at most 2**62 - 1); any K beyond the number of candidates "
            f"ranks everything" + ("; use None for the whole ranking" if allow_none else "")
        )
    return value


@contextmanager
def budget_shared_by(parts: int, budget: int) -> Iterator[None]:
    """Re-raise a MemoryBudgetError with the smallest whole memory_budget when `parts` directions share it."""
    try:
        yield
    except MemoryBudgetError as exc:
        needed = getattr(exc, "needed", None)
        if needed is None or parts == 1:
            raise
        hint = "; or drop mAP@N / PR11 (they need whole rows)" if "mAP@N" in str(exc) else ""
        raise MemoryBudgetError(
            f"memory_budget {format_size(budget)} is too small: the two directions run in parallel with 1/{parts} "
            f"of it each, and one needs at least {format_size(needed)}; the smallest memory_budget that works is "
            f"{format_size(needed * parts)}{hint}"
        ) from None
