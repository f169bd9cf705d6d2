"""Reading a corpus's bottom-up region features (n_images, regions, dim) by image index.

SCAN, IMRAM, VSRN and ADV train on the same `regions` input; this is the one reader they share.
torch is imported only when rows are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fico_registry.errors import MissingInputError

#: region features up to this size (float32 bytes) are read into memory once; larger ones per batch
IN_MEMORY_BYTES = 4 << 30


class RegionFeatures:
    """The `regions` features of `corpus`, checked to be (corpus.n_images, regions, img_dim).

    Calling it with image indices returns their rows as a float32 torch tensor (items, regions, img_dim).
    Features of up to `in_memory_bytes` are loaded once (the memory-mapped .npy is slow to gather
    from at random); larger ones are read per call. `model` names who asks, in error messages.
    """

    def __init__(self, corpus: Any, img_dim: int, *, model: str, in_memory_bytes: int = IN_MEMORY_BYTES) -> None:
        features = getattr(corpus, "features", None) or {}
        if "regions" not in features:
            raise MissingInputError(
                f"{corpus!r} has no 'regions' features: {model} trains on bottom-up region features "
                f"(n, 36, {img_dim}); "
                "attach them (e.g. SCAN's {split}_ims.npy, which the flickr30k / coco loaders find in --root)"
            )
        self.ref = features["regions"]
        shape = tuple(self.ref.shape)
        if len(shape) != 3 or shape[-1] != img_dim or shape[0] != corpus.n_images:
            raise MissingInputError(
                f"region features of {corpus!r} have shape {shape}; expected ({corpus.n_images}, regions, {img_dim})"
            )
        nbytes = int(np.prod(shape)) * 4
        self.array = self.ref.rows(slice(None)).astype(np.float32, copy=False) if nbytes <= in_memory_bytes else None

    def __call__(self, items: Any) -> Any:  # -> torch.Tensor
        import torch

        rows = self.array[items] if self.array is not None else self.ref.rows(items)
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
