"""Scratch tensors reused across the engine's query blocks.

Every block of a direction has the same width, so its score matrix and its comparison masks can
live in buffers allocated once. Fresh per-block tensors cost more than the allocation: blocks of
8M cells (16 rows x 500,000 candidates) pass glibc's mmap threshold, so each one was mapped,
faulted in page by page and unmapped again (362 million minor faults and 688 s of system time in
the 100,000 x 500,000 run), and the two direction threads' arenas held on to the fragments.
"""

from __future__ import annotations

import numpy as np
import torch

from fico_registry.evaluator.similarity import pad_to_gemm_rows


class BlockBuffers:
    """Named (rows, cols) scratch tensors; a later request for fewer rows gets a leading slice."""

    def __init__(self) -> None:
        self._store: dict[str, torch.Tensor] = {}

    def get(
        self, name: str, rows: int, cols: int, dtype: torch.dtype, device: torch.device | None = None
    ) -> torch.Tensor:
        buf = self._store.get(name)
        device = device or torch.device("cpu")
        if buf is None or buf.dtype != dtype or buf.device != device or buf.shape[1] != cols or buf.shape[0] < rows:
            buf = torch.empty((rows, cols), dtype=dtype, device=device)
            self._store[name] = buf
        return buf[:rows]


def row_counts(mask: torch.Tensor) -> torch.Tensor:
    """True cells per row of a 2-d bool tensor, as int64 (rows,).

    On CPU through numpy: torch's bool.sum(1) first widens the whole mask to int64 (8 bytes a
    cell, 64 MB for a 16 x 500,000 block, fresh pages every time).
    """
    if mask.device.type == "cpu":
        return torch.from_numpy(np.count_nonzero(mask.numpy(), axis=1).astype(np.int64, copy=False))
    return mask.sum(1)


_GEMM_MEASURES = ("cosine", "inner_product", "euclidean")


def embedding_block_into(source, start: int, stop: int, buffers: BlockBuffers) -> torch.Tensor | None:
    """source.block(start, stop) of an EmbeddingScores, written into reused buffers.

    Bit-identical to similarity.score_block: the same image-major GEMM (padded to MIN_GEMM_ROWS
    rows on CPU), the same euclidean terms, only with out= targets. None when the measure or the
    device takes the plain path (Hamming, maxsim, CUDA).
    """
    images, texts = source.images, source.texts
    if source.measure not in _GEMM_MEASURES or images.device.type != "cpu":
        return None
    image_queries = source.query_side == "image"
    if image_queries:
        images = images[start:stop]
    else:
        texts = texts[start:stop]
    # image-major as score_block: the image-query block's own scores, or all images x the text block
    dots = _image_major_gemm(images, texts, buffers, "scores" if image_queries else "image_major")
    if source.measure == "euclidean":
        dots.mul_(2).sub_(
            _squared_norms(source, texts)[None, :] if image_queries else _squared_norms(source, images)[:, None]
        )
    if image_queries:
        return dots
    out = buffers.get("scores", dots.shape[1], dots.shape[0], dots.dtype)
    out.copy_(dots.T)
    return out


def _image_major_gemm(images: torch.Tensor, texts: torch.Tensor, buffers: BlockBuffers, name: str) -> torch.Tensor:
    """images @ texts.T into buffer `name`, images padded to MIN_GEMM_ROWS rows as similarity does."""
    rows = images.shape[0]
    padded = pad_to_gemm_rows(images)
    out = buffers.get(name, padded.shape[0], texts.shape[0], images.dtype)
    torch.mm(padded, texts.T, out=out)
    return out[:rows]


def _squared_norms(source, candidates: torch.Tensor) -> torch.Tensor:
    """(candidates * candidates).sum(-1), once per source instead of once per block (a full-size temporary)."""
    cached = getattr(source, "_squared_norms", None)
    if cached is None or cached.shape[0] != candidates.shape[0]:
        cached = (candidates * candidates).sum(-1)
        object.__setattr__(source, "_squared_norms", cached)
    return cached
