"""Score sources: where the engine gets each (query block, candidates) score block from.

Embeddings scored on the fly (one GEMM per block, each distinct candidate vector once), given
matrices (numpy, memmap, torch), their column slices, and `checked_block`, which validates every
block (shape, dtype, NaN / inf) and brings integer scores to exact int64.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import torch

from fico_registry.errors import NonFiniteError, ShapeError
from fico_registry.evaluator.block_buffers import BlockBuffers, embedding_block_into
from fico_registry.evaluator.similarity import as_tensor, score_block

INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
_UNSIGNED_WIDE = (torch.uint16, torch.uint32, torch.uint64)
# 2 * order_key + relevant fits an int64 only for |integer score| < 2**62; wider ones rank by argsort
_PACKED_INT_LIMIT = 1 << 62


def unsigned_as_int64(scores: torch.Tensor) -> torch.Tensor:
    """uint16/32/64 scores as int64 in the same order (uint64: the top bit flipped), ties kept."""
    if scores.dtype == torch.uint64:
        return scores.view(torch.int64) ^ torch.iinfo(torch.int64).min
    return scores.to(torch.int64)


def needs_argsort_keys(scores: torch.Tensor) -> bool:
    """float64, or integers too large for the packed 2 * order_key + relevant keys."""
    if scores.dtype == torch.float64:
        return True
    if scores.dtype != torch.int64 or scores.numel() == 0:
        return False
    low, high = torch.aminmax(scores)
    return int(low) <= -_PACKED_INT_LIMIT or int(high) >= _PACKED_INT_LIMIT


class ScoreSource(Protocol):
    """Rows of scores for one retrieval direction (queries x candidates)."""

    # read-only properties: every implementation derives them from its tensors
    @property
    def n_queries(self) -> int: ...

    @property
    def n_candidates(self) -> int: ...

    def block(self, start: int, stop: int) -> torch.Tensor: ...

    def cell_bytes(self) -> int:
        """Bytes per (query, candidate) cell the source needs while computing a block."""
        ...


def embedding_cell_bytes(images: torch.Tensor, measure: str) -> int:
    """Bytes per (query, candidate) cell while a block of embedding scores is computed."""
    if measure == "maxsim":
        return 4 * (images.shape[1] + 2)
    if measure == "hamming":
        return 8
    width = 8 if images.dtype == torch.float64 else 4
    return width * (3 if measure == "euclidean" else 2)


@dataclass
class EmbeddingScores:
    """Scores computed on the fly from image and text embeddings (one GEMM per block)."""

    images: torch.Tensor
    texts: torch.Tensor
    measure: str
    query_side: str  # "image" (i2t) or "text" (t2i)
    n_bits: int = 0
    trusted: bool = True  # products of finite embeddings: no NaN scan needed
    fresh_blocks: bool = True  # every block is a new tensor the engine may reuse
    # With duplicate candidate vectors, the candidate side holds each distinct vector once and
    # candidate_rows[j] is candidate j's row in it: see unique_candidates.
    candidate_rows: torch.Tensor | None = None

    @property
    def n_queries(self) -> int:
        return (self.images if self.query_side == "image" else self.texts).shape[0]

    @property
    def n_candidates(self) -> int:
        if self.candidate_rows is not None:
            return len(self.candidate_rows)
        return (self.texts if self.query_side == "image" else self.images).shape[0]

    def cell_bytes(self) -> int:
        return embedding_cell_bytes(self.images, self.measure)

    def block(self, start: int, stop: int) -> torch.Tensor:
        if self.query_side == "image":
            out = score_block(self.images[start:stop], self.texts, self.measure, query_side="image", n_bits=self.n_bits)
        else:
            out = score_block(self.images, self.texts[start:stop], self.measure, query_side="text", n_bits=self.n_bits)
        return out if self.candidate_rows is None else out.index_select(1, self.candidate_rows)


def unique_candidates(source: EmbeddingScores) -> EmbeddingScores:
    """The same scores with each distinct candidate vector scored once, when some repeat.

    A float GEMM may give two identical candidate vectors different products with one query (the
    edge columns of a block run through another kernel: 0.38924947 vs 0.38924944 seen in float32),
    which would rank a true tie as a strict order. Scoring each distinct vector once and copying
    its column makes equal vectors equal scores, so the tie policy applies exactly. Integer
    Hamming scores are exact already.
    """
    if source.measure == "hamming" or source.candidate_rows is not None:
        return source
    side = "texts" if source.query_side == "image" else "images"
    vectors = getattr(source, side)
    flat = vectors.reshape(vectors.shape[0], -1)
    distinct, rows = torch.unique(flat, dim=0, return_inverse=True)
    if distinct.shape[0] == flat.shape[0]:
        return source
    distinct = distinct.reshape(-1, *vectors.shape[1:])
    return replace(source, **{side: distinct}, candidate_rows=rows.to(vectors.device))


@dataclass
class MatrixScores:
    """Rows of a given score matrix (numpy, memmap or torch), optionally read transposed."""

    matrix: object
    transpose: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    name: str = "scores"

    def __post_init__(self) -> None:
        shape = tuple(self.matrix.shape)  # type: ignore[attr-defined]
        if len(shape) != 2:
            raise ShapeError(f"{self.name} must be a 2-d matrix, got shape {shape}")
        self._shape = shape[::-1] if self.transpose else shape

    @property
    def n_queries(self) -> int:
        return self._shape[0]

    @property
    def n_candidates(self) -> int:
        return self._shape[1]

    def cell_bytes(self) -> int:
        return 8

    def block(self, start: int, stop: int) -> torch.Tensor:
        rows = self.matrix[:, start:stop].T if self.transpose else self.matrix[start:stop]  # type: ignore[index]
        block = as_tensor(np.ascontiguousarray(rows) if isinstance(rows, np.ndarray) else rows.contiguous(), self.name)
        return block.to(self.device)


class MatrixColumns:
    """Candidates lo..hi-1 of a MatrixScores direction: only those columns are read."""

    trusted = False
    fresh_blocks = False

    def __init__(self, source: MatrixScores, lo: int, hi: int) -> None:
        self.source, self.lo, self.hi = source, lo, hi

    @property
    def n_queries(self) -> int:
        return self.source.n_queries

    @property
    def n_candidates(self) -> int:
        return self.hi - self.lo

    def cell_bytes(self) -> int:
        return self.source.cell_bytes()

    def block(self, start: int, stop: int) -> torch.Tensor:
        matrix, lo, hi = self.source.matrix, self.lo, self.hi
        rows = matrix[lo:hi, start:stop].T if self.source.transpose else matrix[start:stop, lo:hi]  # type: ignore[index]
        block = as_tensor(
            np.ascontiguousarray(rows) if isinstance(rows, np.ndarray) else rows.contiguous(), self.source.name
        )
        return block.to(self.source.device)


def candidate_columns(source: ScoreSource, lo: int, hi: int) -> ScoreSource | None:
    """The same scores restricted to candidates lo..hi-1, or None when the source cannot slice them.

    Embedding blocks keep the image-major GEMM, so a cell is bit-identical in any slice.
    """
    if isinstance(source, EmbeddingScores):
        if source.candidate_rows is not None:
            return replace(source, candidate_rows=source.candidate_rows[lo:hi])
        if source.query_side == "image":
            return replace(source, texts=source.texts[lo:hi])
        return replace(source, images=source.images[lo:hi])
    if isinstance(source, MatrixScores):
        return MatrixColumns(source, lo, hi)
    return None


def checked_block(
    source: ScoreSource,
    start: int,
    stop: int,
    *,
    label: str = "",
    first_candidate: int | None = None,
    buffers: BlockBuffers | None = None,
) -> tuple[torch.Tensor, float | int]:
    """The source's scores for queries start..stop-1, checked (shape, dtype, NaN / inf), fp16/bf16 as
    float32; and the lowest score of its dtype (the floor a missing positive takes). With `buffers`,
    embedding scores are computed into reused tensors (block_buffers)."""
    scores = None
    if buffers is not None and isinstance(source, EmbeddingScores) and source.candidate_rows is None:
        scores = embedding_block_into(source, start, stop, buffers)
    if scores is None:
        scores = source.block(start, stop)
    n_c = source.n_candidates
    if tuple(scores.shape) != (stop - start, n_c):
        raise ShapeError(f"score block has shape {tuple(scores.shape)}, expected {(stop - start, n_c)}")
    if scores.is_floating_point():
        if not getattr(source, "trusted", False) and not bool(torch.isfinite(scores).all()):
            where = "" if first_candidate is None else f" (candidates {first_candidate}..{first_candidate + n_c - 1})"
            raise NonFiniteError(f"{label or 'scores'}: NaN or infinite scores for queries {start}..{stop - 1}{where}")
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()
        return scores, -torch.inf
    if scores.dtype in _UNSIGNED_WIDE:
        scores = unsigned_as_int64(scores)
    if scores.dtype not in INT_DTYPES:
        raise ShapeError(f"scores must be float or integer, got {scores.dtype}")
    return scores, torch.iinfo(scores.dtype).min
