"""Relevance for the engine: the instance map (a caption's image, an image's captions) and
category labels (relevant = shares a label), without materialising relevance matrices:
labels packed into 64-bit words, relevance of chosen candidates and per-query totals on demand.
"""

from __future__ import annotations

import numpy as np
import torch

from fico_registry.evaluator.block_buffers import row_counts


def positives_of_images(caption_to_image: np.ndarray, n_images: int) -> torch.Tensor:
    """(n_images, max captions) caption indices of each image, -1 padded."""
    order = np.argsort(caption_to_image, kind="stable")
    counts = np.bincount(caption_to_image, minlength=n_images)
    width = int(counts.max())
    out = np.full((n_images, width), -1, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.arange(len(order)) - np.repeat(starts, counts)
    out[caption_to_image[order], col] = order
    return torch.from_numpy(out)


def positives_of_texts(caption_to_image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(caption_to_image, dtype=np.int64)[:, None])


def label_relevance(
    query_labels: torch.Tensor,
    candidate_labels: torch.Tensor,
    candidate_map: torch.Tensor | None = None,
    query_map: torch.Tensor | None = None,
) -> LabelRelevance:
    """Relevance = shares at least one label; see LabelRelevance."""
    return LabelRelevance(query_labels, candidate_labels, candidate_map, query_map)


class LabelRelevance:
    """Which candidates share at least one label with each query of a block.

    Captions take their image's labels: query_map / candidate_map index image label rows, so label
    products run over images and captions are gathered (or counted) afterwards. Called as
    relevance(start, stop) it gives the whole (b, n_candidates) bool block (full rankings need
    it); the top-k path asks only for per-query totals and for the relevance of chosen
    candidates, which costs O(b x n_images) and O(b x k) instead of O(b x n_candidates).
    """

    def __init__(
        self,
        query_labels: torch.Tensor,
        candidate_labels: torch.Tensor,
        candidate_map: torch.Tensor | None = None,
        query_map: torch.Tensor | None = None,
        offset: int = 0,
    ) -> None:
        self.query_labels, self.candidate_labels = query_labels, candidate_labels
        self.candidate_map, self.query_map, self.offset = candidate_map, query_map, offset
        self._words: tuple[torch.Tensor, torch.Tensor] | None = None
        self._captions_per_image: torch.Tensor | None = None

    def shifted(self, lo: int) -> LabelRelevance:
        """The same relevance for queries counted from `lo` (a rank's slice of the queries)."""
        return LabelRelevance(
            self.query_labels, self.candidate_labels, self.candidate_map, self.query_map, self.offset + lo
        )

    def _rows(self, start: int, stop: int) -> torch.Tensor | slice:
        start, stop = start + self.offset, stop + self.offset
        return slice(start, stop) if self.query_map is None else self.query_map[start:stop]

    def _image_level(self, start: int, stop: int) -> torch.Tensor:
        return (self.query_labels[self._rows(start, stop)] @ self.candidate_labels.T) > 0

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        if self.query_labels.device.type == "cpu":
            # AND of 64-bit label words instead of a label GEMM: several times faster than torch's
            # GEMM + index_select here, and unlike numpy's BLAS it starts no thread pool whose
            # spinning workers would eat the second core the other direction is using
            query_words, candidate_words = (w.numpy() for w in self._label_words())
            rows = self._rows(start, stop)
            query = query_words[rows if isinstance(rows, slice) else rows.numpy()]
            shared = np.zeros((query.shape[0], candidate_words.shape[0]), dtype=bool)
            for word in range(query.shape[1]):
                shared |= (query[:, word, None] & candidate_words[None, :, word]) != 0
            if self.candidate_map is not None:
                shared = np.take(shared, self.candidate_map.numpy(), axis=1)
            return torch.from_numpy(shared)
        rel = self._image_level(start, stop)
        return rel if self.candidate_map is None else torch.index_select(rel, 1, self.candidate_map)

    def totals(self, start: int, stop: int) -> torch.Tensor:
        """Relevant candidates per query, (b,) int64."""
        rel = self._image_level(start, stop)
        if self.candidate_map is None:
            return row_counts(rel)
        if self._captions_per_image is None:
            counts = torch.bincount(self.candidate_map, minlength=self.candidate_labels.shape[0])
            self._captions_per_image = counts.to(torch.float64)
        return (rel.to(torch.float64) @ self._captions_per_image).round().to(torch.int64)  # integers, exact in float64

    def _label_words(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._words is None:
            self._words = (_as_words(self.query_labels), _as_words(self.candidate_labels))
        return self._words

    def at(self, start: int, stop: int, index: torch.Tensor) -> torch.Tensor:
        """Relevance of candidates `index` (b, m) of queries start..stop-1, (b, m) bool."""
        query_words, candidate_words = self._label_words()
        rows = query_words[self._rows(start, stop)]
        columns = index if self.candidate_map is None else self.candidate_map[index]
        return ((candidate_words[columns] & rows[:, None, :]) != 0).any(-1)

    def count_where(
        self, start: int, stop: int, mask: torch.Tensor, max_pairs: int = 1 << 20, first_column: int = 0
    ) -> torch.Tensor:
        """Relevant candidates among those where `mask` is True, per query, (b,) int64.

        `mask` covers candidates first_column.. (all of them by default).
        """
        query_words, candidate_words = self._label_words()
        query_rows = query_words[self._rows(start, stop)]
        per_row = np.cumsum(row_counts(mask).cpu().numpy())
        out = torch.zeros(mask.shape[0], dtype=torch.int64, device=mask.device)
        first = 0
        while first < mask.shape[0]:  # rows in chunks of about max_pairs marked cells (ties can be wide)
            done = per_row[first - 1] if first else 0
            last = max(first + 1, int(np.searchsorted(per_row, done + max_pairs, side="right")))
            rows, cols = mask[first:last].nonzero(as_tuple=True)
            cols = cols + first_column
            if self.candidate_map is not None:
                cols = self.candidate_map[cols]
            hit = ((query_rows[first:last][rows] & candidate_words[cols]) != 0).any(-1)
            out[first:last] = torch.bincount(rows[hit], minlength=last - first)
            first = last
        return out


class MatrixRelevance:
    """Relevance given whole, as a bool (n_queries, n_candidates) matrix; the interface of LabelRelevance."""

    def __init__(self, relevant: torch.Tensor, offset: int = 0) -> None:
        self.relevant, self.offset = relevant, offset

    def shifted(self, lo: int) -> MatrixRelevance:
        return MatrixRelevance(self.relevant, self.offset + lo)

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        return self.relevant[start + self.offset : stop + self.offset]

    def totals(self, start: int, stop: int) -> torch.Tensor:
        return self(start, stop).sum(1)

    def at(self, start: int, stop: int, index: torch.Tensor) -> torch.Tensor:
        return self(start, stop).gather(1, index)

    def count_where(self, start: int, stop: int, mask: torch.Tensor, first_column: int = 0) -> torch.Tensor:
        return (mask & self(start, stop)[:, first_column : first_column + mask.shape[1]]).sum(1)


def _as_words(labels: torch.Tensor) -> torch.Tensor:
    """Multi-hot rows (n, n_classes) as bit sets (n, words) of int64, for AND-and-test relevance."""
    bits = np.packbits(labels.detach().cpu().numpy() > 0, axis=1, bitorder="little")
    bits = np.pad(bits, ((0, 0), (0, (-bits.shape[1]) % 8)))
    return torch.from_numpy(np.ascontiguousarray(bits).view(np.int64)).to(labels.device)
