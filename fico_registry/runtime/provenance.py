"""Provenance: the hardware and software a run happened on (timings and numbers mean nothing without it).

One home for package versions and the hardware description used by reports, results, costs and
training run records.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

# Packages whose versions change timings or numerics; absent ones are recorded as None.
PACKAGES = (
    "fico-registry",
    "torch",
    "numpy",
    "faiss-cpu",
    "faiss-gpu",
    "transformers",
    "open_clip_torch",
    "timm",
    "scipy",
)


def cpu_model() -> str | None:
    """The CPU's marketing name (Linux /proc/cpuinfo, else platform.processor())."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_bytes() -> dict[str, int | None]:
    """Total and currently available RAM (Linux /proc/meminfo; None elsewhere)."""
    found: dict[str, int | None] = {"total": None, "available": None}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key == "MemTotal":
                    found["total"] = int(rest.split()[0]) * 1024
                elif key == "MemAvailable":
                    found["available"] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return found


def usable_cores() -> int:
    """Cores this process may run on (affinity / cgroup cpusets), not the machine's total."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def package_versions(names: Sequence[str] = PACKAGES, *, skip_missing: bool = False) -> dict[str, str | None]:
    """Installed version of each named distribution (None when absent, or left out with skip_missing)."""
    versions: dict[str, str | None] = {}
    for name in names:
        if not name or name in versions:
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if not skip_missing:
                versions[name] = None
    return versions


def short_hardware() -> dict[str, Any]:
    """Platform, CPUs, and CUDA / GPUs and torch threads if torch is already imported (run records)."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


def gpu_info() -> list[dict[str, Any]]:
    """Name, memory and compute capability of every CUDA device torch sees (empty on CPU)."""
    import torch

    if not torch.cuda.is_available():
        return []
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append(
            {
                "index": i,
                "name": props.name,
                "memory_bytes": int(props.total_memory),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return devices


def hardware_fingerprint() -> dict[str, Any]:
    """Everything that decides how fast the same code runs: CPU, RAM, GPU, threads, versions."""
    import torch

    memory = memory_bytes()
    gpus = gpu_info()
    threads: dict[str, Any] = {
        "torch": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
    }
    with contextlib.suppress(ImportError):
        import faiss

        threads["faiss"] = faiss.omp_get_max_threads()
    load = None
    with contextlib.suppress(AttributeError, OSError):
        load = [round(v, 2) for v in os.getloadavg()]  # other work on the machine skews timings
    cudnn = None
    with contextlib.suppress(Exception):
        cudnn = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable_cores(),
        "ram_bytes": memory["total"],
        "ram_available_bytes": memory["available"],
        "gpus": gpus,
        "gpu": gpus[0]["name"] if gpus else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "threads": threads,
        "load_average": load,
        "packages": package_versions(),
    }
