"""Costs of retrieval models at scale: encode time, storage, query-time attention, budgets.

`run_costs` measures models on a corpus duplicated to each requested scale (the FiCo-ITR
method); see docs/costs.md for what every number means.
"""

from __future__ import annotations

from fico_registry.runtime.provenance import hardware_fingerprint
from fico_registry.studies.costs.budget import Budget, parse_memory_budget
from fico_registry.studies.costs.runner import CostSettings, run_costs
from fico_registry.studies.costs.scales import Scale, parse_scales

__all__ = [
    "Budget",
    "CostSettings",
    "Scale",
    "hardware_fingerprint",
    "parse_memory_budget",
    "parse_scales",
    "run_costs",
]
