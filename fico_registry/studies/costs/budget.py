"""Time and memory budgets of one run (one model at one scale): refuse before, stop during.

A scale whose predicted time or memory exceeds the budget is not started (DNF, with the reason
and the prediction). A run that was started but overruns its time budget is stopped at the next
encoder / scorer call (a model wrapper checks the clock), also reported as DNF.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fico_registry.errors import OptionError
from fico_registry.models.loading import Model
from fico_registry.runtime.sizes import parse_size
from fico_registry.studies.costs.storage import GIB, StorageModel

# Working memory the engine may use for one block of scores while searching (bounded, fixed).
SEARCH_BLOCK_BYTES = 256 << 20


class BudgetExceeded(Exception):
    """Raised inside a run when its time budget is spent."""

    def __init__(self, elapsed: float, budget: float):
        super().__init__(f"stopped after {elapsed:.1f} s: over the time budget of {budget:g} s")
        self.elapsed = elapsed


def parse_memory_budget(value: str | float | int | None) -> int | None:
    """Bytes from a size with a unit ('500MB', '2GB') or an int of bytes; None: no budget.

    The one rule of fico_registry.runtime.sizes, shared with `fico evaluate --memory-budget`.
    """
    if value is None:
        return None
    return parse_size(value, what="memory budget")


def default_memory_budget() -> int | None:
    """Three quarters of the RAM available now: a run predicted to need more would swap or die."""
    from fico_registry.runtime.provenance import memory_bytes

    available = memory_bytes()["available"]
    return None if available is None else int(available * 0.75)


def predicted_memory(storage: StorageModel, scale: Any, query_kind: str) -> dict[str, int]:
    """Bytes a run holds at its peak, from shapes: encoder outputs (one side twice, because the
    encoding loop concatenates its batches), the full score matrix for cross-attention (the core
    materialises it, float32) and the search block. Model weights and activations are not included:
    they do not grow with the collection."""
    per = {
        side: sum(t.output_bytes_per_item for t in layout)
        for side, layout in (("image", storage.image), ("text", storage.text))
    }
    images, texts = per["image"] * scale.n_images, per["text"] * scale.n_texts
    parts = {
        "encoder_outputs": images + texts + max(images, texts),
        "score_matrix": 4 * scale.n_images * scale.n_texts if query_kind == "cross-attention" else 0,
        "search_block": SEARCH_BLOCK_BYTES,
    }
    parts["total"] = sum(parts.values())
    return parts


@dataclass(frozen=True)
class Budget:
    time_s: float | None = None
    memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.time_s is not None and self.time_s <= 0:
            raise OptionError(f"time budget must be positive seconds, got {self.time_s}")

    def refuse(self, predicted_s: float, predicted_bytes: int) -> dict[str, str]:
        """What a run with these predictions would exceed ({"time": why, "memory": why}); empty when it fits."""
        over = {}
        if self.time_s is not None and predicted_s > self.time_s:
            over["time"] = f"predicted {predicted_s:.3g} s > time budget {self.time_s:g} s"
        if self.memory_bytes is not None and predicted_bytes > self.memory_bytes:
            over["memory"] = (
                f"predicted {predicted_bytes / GIB:.3g} GiB > memory budget {self.memory_bytes / GIB:.3g} GiB"
            )
        return over

    def to_dict(self) -> dict[str, Any]:
        return {
            "time_s": self.time_s,
            "memory_bytes": self.memory_bytes,
            "memory_gib": None if self.memory_bytes is None else round(self.memory_bytes / GIB, 3),
            "applies_to": "one run: one model at one scale (encoding both sides + query-time work)",
        }


class DeadlineModel(Model):
    """A loaded Model whose encoder and scorer calls raise BudgetExceeded once time is up.

    A Model itself (same encoder, card and config), so evaluate() and the core's loops accept it.
    """

    def __init__(self, model: Model, budget_s: float | None):
        self.__dict__.update(model.__dict__)
        self._budget = budget_s
        self._started = time.perf_counter()

    def check(self) -> None:
        """Raise BudgetExceeded when the run is over its time budget (also for loops that call no model)."""
        if self._budget is not None:
            elapsed = time.perf_counter() - self._started
            if elapsed > self._budget:
                raise BudgetExceeded(elapsed, self._budget)

    def encode_images(self, batch: Any) -> Any:
        self.check()
        return super().encode_images(batch)

    def encode_texts(self, batch: Any) -> Any:
        self.check()
        return super().encode_texts(batch)

    def score(self, images: Any, texts: Any) -> Any:
        self.check()
        return super().score(images, texts)

    def score_pairs(self, images: Any, texts: Any) -> Any:
        self.check()
        return super().score_pairs(images, texts)
