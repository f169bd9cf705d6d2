"""Cross-cutting helpers with one home each: progress bars (and, as they move here, provenance,
devices, torch.distributed set-up and memory budgets).

May import: fico_registry.errors only (and third-party libraries, lazily).
"""
