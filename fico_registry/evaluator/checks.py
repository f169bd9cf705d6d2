"""Checks of the evaluator's inputs: score matrices, the caption-to-image map and category labels.

Each check raises the library's own error (ShapeError, MappingError, LabelError) with a message
that says what to pass instead, before any ranking starts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fico_registry.errors import LabelError, MappingError, ShapeError
from fico_registry.evaluator.similarity import as_tensor


def n_items(x: Any) -> int:
    """Rows of an array-like without reading it (0 when it has none or no shape)."""
    shape = getattr(x, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else 0
    return len(x) if isinstance(x, (list, tuple)) else 0


def check_matrix(x: Any, name: str) -> Any:
    """A 2-d numeric score matrix: numpy arrays (memmaps) as they are, anything else as a tensor."""
    if isinstance(x, np.ndarray):
        if x.ndim != 2:
            raise ShapeError(f"{name} must be a 2-d (queries, candidates) matrix, got shape {x.shape}")
        if x.dtype.kind not in "fiu":
            raise ShapeError(f"{name} has dtype {x.dtype}; scores must be numeric")
        if 0 in x.shape:
            raise ShapeError(f"{name} is empty: shape {x.shape}")
        return x  # rows are read (and checked for NaN) block by block
    t = as_tensor(x, name)
    if t.ndim != 2 or 0 in t.shape:
        raise ShapeError(f"{name} must be a non-empty 2-d matrix, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise ShapeError(f"{name} has dtype {t.dtype}; scores must be real numbers")
    return t


def check_mapping(caption_to_image: Any, n_images: int, n_texts: int) -> np.ndarray:
    """caption_to_image as int64, every caption mapped to an image and every image captioned."""
    if isinstance(caption_to_image, torch.Tensor):
        c2i = caption_to_image.detach().cpu().numpy()
    else:
        c2i = as_array(caption_to_image)
    if c2i.ndim != 1 or c2i.dtype.kind not in "iu":
        raise MappingError(f"caption_to_image must be a 1-d integer array, got shape {c2i.shape} dtype {c2i.dtype}")
    if len(c2i) != n_texts:
        raise MappingError(f"caption_to_image has {len(c2i)} entries but there are {n_texts} captions")
    if len(c2i) and (c2i.min() < 0 or c2i.max() >= n_images):
        raise MappingError(f"caption_to_image values must lie in [0, {n_images - 1}]; found {c2i.min()}..{c2i.max()}")
    counts = np.bincount(c2i, minlength=n_images)
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0)
        raise MappingError(
            f"{len(empty)} images have no caption (first: {empty[:5].tolist()}); every image needs at least one, "
            "or drop those images"
        )
    return c2i.astype(np.int64)


def as_array(x: Any, error: type[Exception] = MappingError) -> np.ndarray:
    try:
        return np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise error(f"cannot read {type(x).__name__} as an array ({exc}); give equal-length rows") from None


def check_labels(labels: Any, n_images: int) -> torch.Tensor:
    """Multi-hot (n_images, n_classes) labels as a float32 tensor."""
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else as_array(labels, LabelError)
    if lab.ndim != 2:
        raise LabelError(f"labels must be (n_images, n_classes) multi-hot, got shape {lab.shape}")
    if lab.shape[1] == 0:
        raise LabelError(
            f"labels have shape {lab.shape}: zero classes, so no image is relevant to any query; pass at least "
            "one class per row, or labels=None for instance metrics only"
        )
    if lab.dtype.kind not in "biuf":
        raise LabelError(f"labels have dtype {lab.dtype}; pass a numeric 0/1 multi-hot array")
    if lab.shape[0] != n_images:
        raise LabelError(f"labels have {lab.shape[0]} rows but there are {n_images} images (one row per image)")
    if lab.dtype.kind == "f" and not np.isfinite(lab).all():
        raise LabelError("labels hold NaN or infinite values")
    if not np.isin(lab, (0, 1)).all():
        raise LabelError("labels must be multi-hot: every entry 0 or 1 (a caption takes its image's labels)")
    return torch.from_numpy(lab.astype(np.float32))
