"""Device resolution, one home for the evaluator, model loading and the command lines.

"auto" (or None) is CUDA when torch sees it, else the CPU; anything else is checked: a device that is
unknown, unsupported or not available here is refused with a DeviceError (an OptionError and a
ConfigError) whose message says what to use instead. torch is imported only when a device is resolved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fico_registry.errors import DeviceError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "use 'auto', 'cpu', 'cuda' or 'cuda:N' (or 'mps' on Apple silicon)"


def resolve_device(device: str | torch.device | None, *, allow_meta: bool = False) -> torch.device:
    """The torch.device to run on: "auto" / None picks CUDA when available; others go through checked_device.

    allow_meta: accept torch's "meta" device (shapes without storage), which model loading uses to
    build architectures without memory; the evaluator needs real numbers and refuses it.
    """
    import torch

    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return checked_device(device, allow_meta=allow_meta)


def checked_device(device: str | torch.device, *, allow_meta: bool = False) -> torch.device:
    """torch.device(device), refused with DeviceError when it is unknown or not available here."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {device!r}; {DEVICE_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but torch sees no CUDA device; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"device {device!r} is not available on this machine; use device='cpu'")
    elif dev.type != "cpu" and not (allow_meta and dev.type == "meta"):
        raise DeviceError(f"device {device!r} is not supported; {DEVICE_HELP}")
    return dev
