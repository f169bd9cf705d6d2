"""Costs of retrieval models at scale: encode time, storage, query-time attention, budgets.

`run_costs` measures models on a corpus duplicated to each requested scale (the FiCo-ITR
method); see docs/costs.md for what every number means.
"""

from __future__ import annotations

from .budget import Budget, parse_memory_budget
from .hardware import hardware_fingerprint
from .runner import CostSettings, run_costs
from .scales import Scale, parse_scales

__all__ = [
    "Budget",
    "CostSettings",
    "Scale",
    "hardware_fingerprint",
    "parse_memory_budget",
    "parse_scales",
    "run_costs",
]
