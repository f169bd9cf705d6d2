"""The evaluator's metric options and their checks: Ks, devices, the memory budget's share per direction."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from fico_registry.errors import MemoryBudgetError, OptionError
from fico_registry.evaluator import metrics
from fico_registry.evaluator.judged_pass import DEFAULT_NDCG_KS
from fico_registry.runtime.devices import DEVICE_HELP, checked_device  # noqa: F401  (their old home)
from fico_registry.runtime.sizes import format_size

# the tie formulas compute k - g and binomials in int64: any K this large already means "everything"
MAX_K = 1 << 62
DEFAULT_RECALL_KS = (1, 5, 10)
DEFAULT_MAP_KS: tuple[int | None, ...] = (10, 100, None)


@dataclasses.dataclass(frozen=True)
class MetricOptions:
    """What to compute and how, shared by every evaluation entry point (one object instead of eight arguments)."""

    recall_ks: Sequence[int] = DEFAULT_RECALL_KS
    map_ks: Sequence[int | None] = DEFAULT_MAP_KS
    ties: str = "expected"
    map_variant: str = "fico"
    memory_budget: int | str | None = None
    progress: bool | None = None
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS
    gain: str = "linear"

    def checked(self) -> MetricOptions:
        """These options checked, recall_ks / map_ks as tuples of ints (a bare int K means (K,))."""
        metrics.check_ties(self.ties)
        metrics.check_variant(self.map_variant)
        recall = checked_ks(self.recall_ks, "recall_ks", allow_none=False)
        map_ks = checked_ks(self.map_ks, "map_ks", allow_none=True)
        return dataclasses.replace(self, recall_ks=recall, map_ks=map_ks)  # type: ignore[arg-type]


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
