"""Relevance judgments (qrels): which candidates are relevant to which query, with grades.

The instance map (a caption's one image) and shared category labels are two fixed forms of
relevance. Judgments are the general one: for one direction, query index -> {candidate index:
grade}, grade > 0 relevant (binary judgments are grade 1). ECCV Caption and CxC extend COCO's
instance positives this way; graded judgments (e.g. 0..N relevance scores) rank with NDCG.

Stored as compressed sparse rows (one row per query, candidate indices sorted), so a query
block's judged items are a slice. Grades <= 0 are dropped on construction: TREC qrels list
judged non-relevant items with grade 0, and they count exactly like unjudged ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import DataFormatError, MappingError, NonFiniteError, ShapeError

DIRECTIONS = ("i2t", "t2i")


@dataclass(frozen=True, eq=False)
class Judgments:
    """Sparse relevance judgments for one retrieval direction (CSR, grades > 0 only)."""

    n_queries: int
    n_candidates: int
    indptr: np.ndarray  # (n_queries + 1,) int64: row q is indices[indptr[q]:indptr[q + 1]]
    indices: np.ndarray  # int64 candidate indices, sorted within each row
    grades: np.ndarray  # float64, > 0

    def __post_init__(self) -> None:
        if self.indptr.shape != (self.n_queries + 1,) or self.indptr[0] != 0 or self.indptr[-1] != len(self.indices):
            raise ShapeError("judgments: indptr must have n_queries + 1 entries from 0 to the number of pairs")
        if len(self.grades) != len(self.indices):
            raise ShapeError("judgments: one grade per judged pair is needed")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_pairs(
        cls,
        queries: Sequence[int] | np.ndarray,
        candidates: Sequence[int] | np.ndarray,
        n_queries: int,
        n_candidates: int,
        grades: Sequence[float] | np.ndarray | None = None,
    ) -> Judgments:
        """From parallel arrays of (query, candidate[, grade]); every pair at most once."""
        q = _index_array(queries, "query indices")
        c = _index_array(candidates, "candidate indices")
        if q.shape != c.shape:
            raise ShapeError(f"judgments: {len(q)} query indices but {len(c)} candidate indices")
        g = np.ones(len(q)) if grades is None else np.asarray(grades, dtype=np.float64).reshape(-1)
        if g.shape != q.shape:
            raise ShapeError(f"judgments: {len(g)} grades for {len(q)} pairs")
        if not np.isfinite(g).all():
            raise NonFiniteError(
                f"judgments: {int((~np.isfinite(g)).sum())} grades are NaN or infinite; use finite numbers"
            )
        for name, idx, size in (("query", q, n_queries), ("candidate", c, n_candidates)):
            if len(idx) and (idx.min() < 0 or idx.max() >= size):
                bad = int(idx[(idx < 0) | (idx >= size)][0])
                raise MappingError(f"judgments: {name} index {bad} is outside 0..{size - 1} (there are {size} {name}s)")
        keep = g > 0
        q, c, g = q[keep], c[keep], g[keep]
        order = np.lexsort((c, q))
        q, c, g = q[order], c[order], g[order]
        dup = (np.diff(q) == 0) & (np.diff(c) == 0)
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise DataFormatError(
                f"judgments: the pair (query {q[i]}, candidate {c[i]}) is judged twice; keep one grade per pair"
            )
        indptr = np.zeros(n_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(q, minlength=n_queries), out=indptr[1:])
        return cls(int(n_queries), int(n_candidates), indptr, c.astype(np.int64), g.astype(np.float64))

    @classmethod
    def from_dict(
        cls, judged: Mapping[int, Mapping[int, float] | Iterable[int]], n_queries: int, n_candidates: int
    ) -> Judgments:
        """From {query: {candidate: grade}} or {query: [candidates]} (grade 1)."""
        q: list[int] = []
        c: list[int] = []
        g: list[float] = []
        for query, items in judged.items():
            if isinstance(items, Mapping):
                for candidate, grade in items.items():
                    q.append(query)
                    c.append(candidate)
                    g.append(grade)
            else:
                for candidate in items:
                    q.append(query)
                    c.append(candidate)
                    g.append(1.0)
        return cls.from_pairs(q, c, n_queries, n_candidates, g)

    @classmethod
    def from_sparse(cls, matrix: Any) -> Judgments:
        """From a scipy sparse (or dense) (n_queries, n_candidates) matrix of grades."""
        import scipy.sparse as sp

        coo = sp.coo_matrix(matrix)
        return cls.from_pairs(coo.row, coo.col, coo.shape[0], coo.shape[1], coo.data)

    @classmethod
    def from_trec(
        cls, path: str | os.PathLike, query_ids: Sequence[Any], candidate_ids: Sequence[Any], *, strict: bool = True
    ) -> Judgments:
        """From a TREC qrels file: lines `query_id iteration candidate_id grade` (whitespace separated).

        Ids are matched as strings against query_ids / candidate_ids (row / column order). With
        strict=True an id that is not in the corpus is an error; otherwise its lines are skipped.
        """
        q_index = {str(x): i for i, x in enumerate(query_ids)}
        c_index = {str(x): i for i, x in enumerate(candidate_ids)}
        q: list[int] = []
        c: list[int] = []
        g: list[float] = []
        path = Path(path)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 4:
                raise DataFormatError(
                    f"{path}:{number}: a qrels line has 4 fields (query iteration candidate grade); got {len(fields)}"
                )
            try:
                grade = float(fields[3])
            except ValueError:
                raise DataFormatError(f"{path}:{number}: the grade {fields[3]!r} is not a number") from None
            qi, ci = q_index.get(fields[0]), c_index.get(fields[2])
            if qi is None or ci is None:
                if strict:
                    which = f"query id {fields[0]!r}" if qi is None else f"candidate id {fields[2]!r}"
                    raise MappingError(
                        f"{path}:{number}: {which} is not in the corpus (pass strict=False to skip such lines)"
                    )
                continue
            q.append(qi)
            c.append(ci)
            g.append(grade)
        return cls.from_pairs(q, c, len(q_index), len(c_index), g)

    @classmethod
    def from_map(cls, caption_to_image: np.ndarray, n_images: int, direction: str) -> Judgments:
        """The instance ground truth as judgments: i2t = each image's captions, t2i = each caption's image."""
        c2i = np.asarray(caption_to_image, dtype=np.int64)
        captions = np.arange(len(c2i))
        if direction == "i2t":
            return cls.from_pairs(c2i, captions, n_images, len(c2i))
        if direction == "t2i":
            return cls.from_pairs(captions, c2i, len(c2i), n_images)
        raise ValueError(f"direction must be 'i2t' or 't2i'; got {direction!r}")

    # -- reading --------------------------------------------------------------------------------

    @property
    def graded(self) -> bool:
        """True when any grade differs from 1 (NDCG then differs from its binary form)."""
        return bool(len(self.grades)) and bool((self.grades != 1).any())

    @property
    def counts(self) -> np.ndarray:
        """(n_queries,) relevant candidates per query, R."""
        return np.diff(self.indptr)

    @property
    def judged_queries(self) -> np.ndarray:
        """Indices of the queries with at least one relevant candidate (the others are left out)."""
        return np.flatnonzero(self.counts > 0)

    def rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Queries lo..hi-1 as (row within the block, candidate, grade) triples."""
        start, stop = int(self.indptr[lo]), int(self.indptr[hi])
        row = np.repeat(np.arange(hi - lo), np.diff(self.indptr[lo : hi + 1]))
        return row, self.indices[start:stop], self.grades[start:stop]

    def transpose(self) -> Judgments:
        """The same judgments seen from the other side (e.g. t2i from i2t)."""
        q = np.repeat(np.arange(self.n_queries), self.counts)
        return Judgments.from_pairs(self.indices, q, self.n_candidates, self.n_queries, self.grades)

    def check_shape(self, n_queries: int, n_candidates: int, what: str) -> None:
        if (self.n_queries, self.n_candidates) != (n_queries, n_candidates):
            raise ShapeError(
                f"{what}: judgments cover {self.n_queries} queries x {self.n_candidates} candidates, "
                f"but the evaluation has {n_queries} x {n_candidates}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_queries": self.n_queries,
            "n_candidates": self.n_candidates,
            "judged_queries": len(self.judged_queries),
            "pairs": len(self.indices),
            "graded": self.graded,
        }


@dataclass(frozen=True, eq=False)
class JudgmentSet:
    """Named judgments for both directions of one corpus (either may be absent)."""

    name: str
    i2t: Judgments | None = None
    t2i: Judgments | None = None
    source: str = ""  # where they came from (package and file, qrels path, ...)

    def __post_init__(self) -> None:
        if self.i2t is None and self.t2i is None:
            raise DataFormatError(f"judgment set {self.name!r} has neither i2t nor t2i judgments")

    def direction(self, name: str) -> Judgments | None:
        return self.i2t if name == "i2t" else self.t2i

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "source": self.source}
        for direction in DIRECTIONS:
            judged = self.direction(direction)
            out[direction] = None if judged is None else judged.to_dict()
        return out


def as_judgment_sets(judgments: Any) -> dict[str, JudgmentSet]:
    """Normalise what evaluate_* accept: a JudgmentSet, a mapping name -> JudgmentSet or
    name -> (i2t, t2i) pair of Judgments (either may be None)."""
    if judgments is None:
        return {}
    if isinstance(judgments, JudgmentSet):
        return {judgments.name: judgments}
    if not isinstance(judgments, Mapping):
        raise DataFormatError("judgments must be a JudgmentSet or a mapping name -> JudgmentSet or (i2t, t2i)")
    out: dict[str, JudgmentSet] = {}
    for name, value in judgments.items():
        if isinstance(value, JudgmentSet):
            out[str(name)] = value
        elif isinstance(value, tuple | list) and len(value) == 2:
            out[str(name)] = JudgmentSet(str(name), value[0], value[1])
        else:
            raise DataFormatError(f"judgments[{name!r}] must be a JudgmentSet or an (i2t, t2i) pair of Judgments")
    return out


def _index_array(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise DataFormatError(f"judgments: {what} must be integers; got dtype {arr.dtype}")
    return arr.astype(np.int64).reshape(-1)
