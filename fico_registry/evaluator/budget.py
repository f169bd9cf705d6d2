"""The memory budget: the default share of free memory, parsing a user's budget, and how many
query rows one block may hold.
"""

from __future__ import annotations

import os

import torch

from fico_registry.errors import MemoryBudgetError
from fico_registry.runtime.sizes import format_size, parse_size


def default_memory_budget(device: torch.device) -> int:
    """A safe share of free memory: half the free GPU memory, or a quarter of available RAM
    (<= 4 GiB, split among this host's torchrun ranks)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        available = 8 << 30
    # ranks of one torchrun job on this host share its RAM
    try:
        local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_ranks = 1
    return int(min(available * 0.25, 4 << 30) / local_ranks)


def parse_budget(budget: int | str | None, device: torch.device) -> int:
    if budget is None:
        return default_memory_budget(device)
    return parse_size(budget)


# Blocks larger than this are no faster, only slower: the per-cell arrays of a bigger block pass
# glibc's 32 MB mmap threshold, so every block pays fresh page faults instead of reusing the heap
# (measured: tie-group extraction 2.5x slower per cell at 28M cells than at 6M; bench_evaluator).
EFFICIENT_BLOCK_CELLS = 1 << 21
MIN_BLOCK_ROWS = 16  # enough rows for the GEMM to stay efficient on very wide rows


def rows_per_block(n_candidates: int, cell_bytes: int, budget: int, full_sort: bool) -> int:
    """Query rows per block: what the memory budget allows, capped at EFFICIENT_BLOCK_CELLS."""
    # scores + keys + sorted keys + relevance + group temporaries (about 8 int64 arrays per cell)
    per_cell = cell_bytes + (72 if full_sort else 12)
    rows = budget // max(1, n_candidates * per_cell)
    if rows < 1:
        need = n_candidates * per_cell
        error = MemoryBudgetError(
            f"one query row needs about {format_size(need)} but memory_budget is {format_size(budget)}; "
            f"raise memory_budget to at least {format_size(need)} or drop mAP@N / PR11 (they need whole rows)"
        )
        error.needed = need  # type: ignore[attr-defined]
        raise error
    return int(min(rows, max(MIN_BLOCK_ROWS, EFFICIENT_BLOCK_CELLS // max(1, n_candidates))))
