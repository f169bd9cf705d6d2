"""Cross-cutting helpers with one home each: progress bars, provenance, sizes, devices (resolve_device) and
torch.distributed set-up (distributed: rank, world size, joining and leaving torchrun's process group).

May import: fico_registry.errors only (and third-party libraries, lazily).
"""
