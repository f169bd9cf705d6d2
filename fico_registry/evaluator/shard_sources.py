"""The score sources of a sharded evaluation: views of a rank's share, and scores held in shards.

- QueryRows / query_rows_of: queries lo..hi-1 of a source (a rank's share in the "queries" mode);
- candidate_columns_of: candidates lo..hi-1 of every query (a rank's slice in the "candidates" mode);
- ShardEmbeddingScores: embeddings held as shards, query blocks broadcast by the rank holding them;
- LocalRows: a rank's query rows of a cross-attention matrix held in pieces across the ranks.

May import: fico_registry.evaluator.sources / similarity, runtime.distributed, errors (torch lazily).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fico_registry.errors import OptionError, ShapeError
from fico_registry.runtime.distributed import split


class QueryRows:
    """Queries lo..hi-1 of a score source (a rank's share in the "queries" mode)."""

    def __init__(self, source: Any, lo: int, hi: int) -> None:
        self.source, self.lo, self.hi = source, lo, hi
        self.trusted = bool(getattr(source, "trusted", False))
        self.fresh_blocks = bool(getattr(source, "fresh_blocks", False))

    @property
    def n_queries(self) -> int:
        return self.hi - self.lo

    @property
    def n_candidates(self) -> int:
        return self.source.n_candidates

    def cell_bytes(self) -> int:
        return self.source.cell_bytes()

    def block(self, start: int, stop: int) -> Any:
        return self.source.block(self.lo + start, self.lo + stop)


def query_rows_of(source: Any, lo: int, hi: int) -> Any:
    """Queries lo..hi-1 as a source of the same kind where possible (views, no copies)."""
    from fico_registry.evaluator.sources import EmbeddingScores, MatrixScores

    if isinstance(source, EmbeddingScores):
        if source.query_side == "image":
            return replace(source, images=source.images[lo:hi])
        return replace(source, texts=source.texts[lo:hi])
    if isinstance(source, MatrixScores):
        rows = source.matrix[:, lo:hi] if source.transpose else source.matrix[lo:hi]  # type: ignore[index]
        return MatrixScores(rows, transpose=source.transpose, device=source.device, name=source.name)
    return QueryRows(source, lo, hi)


def candidate_columns_of(source: Any, lo: int, hi: int) -> Any:
    """Candidates lo..hi-1 of every query: this rank's slice in the "candidates" mode."""
    from fico_registry.evaluator.sources import candidate_columns

    if isinstance(source, ShardEmbeddingScores):
        return source.local(lo, hi)
    columns = candidate_columns(source, lo, hi)
    if columns is None:
        raise OptionError(f"{type(source).__name__} scores cannot be split by candidates; use FICO_SHARD=queries")
    return columns


@dataclass(kw_only=True, eq=False)  # eq=False: sources stay hashable, compared by identity
class ShardEmbeddingScores:
    """Every query against this rank's candidate shard; each query block is broadcast by the rank holding it.

    `queries` and `candidates` are this rank's shards (rows split(n, world, rank)) of the query
    and candidate sides; n_queries / n_candidates count all ranks' rows. Every rank must ask for
    the same blocks in the same order (the candidate-sharded ranking does).
    """

    trusted = True  # products of finite embeddings: no NaN scan needed
    fresh_blocks = True

    sharding: Any
    queries: Any
    candidates: Any
    measure: str
    query_side: str
    n_bits: int
    n_queries: int
    n_candidates: int

    def cell_bytes(self) -> int:
        from fico_registry.evaluator.sources import embedding_cell_bytes

        images = self.queries if self.query_side == "image" else self.candidates
        return embedding_cell_bytes(images, self.measure)

    def local(self, lo: int, hi: int) -> ShardEmbeddingScores:
        """The same source seen as its candidate slice (n_candidates = this rank's rows)."""
        if hi - lo != self.candidates.shape[0]:
            raise ShapeError(
                f"candidate slice {lo}..{hi} does not match this rank's shard of {self.candidates.shape[0]} rows"
            )
        return replace(self, n_candidates=hi - lo)

    def query_rows(self, start: int, stop: int) -> Any:
        import torch

        world, me = self.sharding.world_size, self.sharding.rank
        my_lo, _ = split(self.n_queries, world, me)
        pieces = []
        for owner in range(world):
            lo, hi = split(self.n_queries, world, owner)
            a, b = max(lo, start), min(hi, stop)
            if a >= b:
                continue
            if owner == me:
                piece = self.queries[a - my_lo : b - my_lo]
            else:
                piece = torch.empty(
                    (b - a, *self.queries.shape[1:]), dtype=self.queries.dtype, device=self.queries.device
                )
            pieces.append(self.sharding.broadcast(piece, src=owner))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def block(self, start: int, stop: int) -> Any:
        from fico_registry.evaluator.similarity import score_block

        rows = self.query_rows(start, stop)
        if self.query_side == "image":
            return score_block(rows, self.candidates, self.measure, query_side="image", n_bits=self.n_bits)
        return score_block(self.candidates, rows, self.measure, query_side="text", n_bits=self.n_bits)


class LocalRows:
    """This rank's query rows lo.. of a score matrix held in pieces across the ranks (n_queries counts all)."""

    trusted = False
    fresh_blocks = False

    def __init__(self, rows: np.ndarray, *, n_queries: int, lo: int, name: str, device: Any) -> None:
        self.rows, self.n_queries, self.lo, self.name, self.device = rows, n_queries, lo, name, device

    @property
    def n_candidates(self) -> int:
        return int(self.rows.shape[1])

    def cell_bytes(self) -> int:
        return int(self.rows.dtype.itemsize)

    def scores(self) -> Any:
        from fico_registry.evaluator.sources import MatrixScores

        return MatrixScores(self.rows, device=self.device, name=self.name)

    def block(self, start: int, stop: int) -> Any:
        raise OptionError(f"{self.name}: this rank holds only query rows {self.lo}..{self.lo + len(self.rows) - 1}")
