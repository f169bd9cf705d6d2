"""Small, conditional fixes for broken environments. One place, nothing else does this."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_keepalive: list[Any] = []


def ensure_torchvision() -> None:
    """Make torchvision importable beside a CPU-only torch.

    PyPI's torchvision wheel for torch 2.13 is a CUDA build: with the CPU torch its _C.so does
    not load, and its meta registrations then refer to `torchvision::nms`, which was never
    defined, so `import torchvision` (and timm, open_clip, transformers' image models) fails.
    Defining the two op schemas first lets it import; only the compiled ops (nms, roi_align,
    image decoding) then raise when called, and retrieval uses none of them. With a matching
    torch / torchvision pair this does nothing.
    """
    if "torchvision" in sys.modules or _keepalive:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    import torch

    for lib_file in Path(spec.origin).parent.glob("_C*.so"):
        try:
            torch.ops.load_library(str(lib_file))
            return
        except OSError:
            break
    try:
        torch.ops.torchvision.nms  # noqa: B018 - defined by a working build
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    _keepalive.append(lib)
    log.debug("torchvision's compiled ops could not load; defined nms/qnms schemas so it imports")
