"""Query-time attention: cross-attention score matrices and fusion re-rank, as engine score sources.

Both count their scorer calls and time them, so reports carry the attention cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fico_registry.errors import ModelOutputError
from fico_registry.evaluator.sources import EmbeddingScores
from fico_registry.runtime.progress import progress_bar


@dataclass
class ScorerCost:
    calls: int = 0
    pairs: int = 0
    seconds: float = 0.0

    def to_dict(self, kind: str) -> dict[str, Any]:
        return {"kind": kind, "calls": self.calls, "pairs": self.pairs, "seconds": round(self.seconds, 6)}


def take(features: Any, index: Any, device: str | torch.device) -> Any:
    """Rows `index` (slice or integer array) of a feature tensor or dict of tensors, on `device`."""
    if isinstance(features, dict):
        return {k: take(v, index, device) for k, v in features.items()}
    if isinstance(index, np.ndarray):
        index = torch.from_numpy(index)
    return features[index].to(device, non_blocking=True)


def _n(features: Any) -> int:
    return len(next(iter(features.values()))) if isinstance(features, dict) else len(features)


def cross_attention_matrix(
    model: Any,
    image_features: Any,
    text_features: Any,
    *,
    device: str | torch.device,
    image_block: int = 128,
    text_block: int = 1024,
    out: np.ndarray | None = None,
    cost: ScorerCost | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """The full (n_images, n_texts) matrix of model.score over blocks (the model's i2t = t2i.T)."""
    n_img, n_txt = _n(image_features), _n(text_features)
    cost = cost if cost is not None else ScorerCost()
    with progress_bar(progress, f"cross-attention ({model.name})", n_img) as advance:
        for i0 in range(0, n_img, image_block):
            i1 = min(n_img, i0 + image_block)
            images = take(image_features, slice(i0, i1), device)
            for t0 in range(0, n_txt, text_block):
                t1 = min(n_txt, t0 + text_block)
                texts = take(text_features, slice(t0, t1), device)
                began = time.perf_counter()
                with torch.inference_mode():
                    block = model.score(images, texts)
                if block.is_cuda:
                    torch.cuda.synchronize(block.device)
                cost.seconds += time.perf_counter() - began
                cost.calls += 1
                cost.pairs += (i1 - i0) * (t1 - t0)
                block = block.detach().cpu()
                if not torch.isfinite(block).all():
                    raise ModelOutputError(f"{model.name}.score returned NaN or inf for images {i0}..{i1 - 1}")
                if out is None:
                    dtype = np.float64 if block.dtype == torch.float64 else np.float32
                    out = np.empty((n_img, n_txt), dtype=dtype)
                out[i0:i1, t0:t1] = block.numpy()
            advance(i1 - i0)
    assert out is not None
    return out


class OverFirstStage:
    """A score source that re-scores another one, `first`: the same queries and candidates."""

    first: Any

    @property
    def n_queries(self) -> int:
        return self.first.n_queries

    @property
    def n_candidates(self) -> int:
        return self.first.n_candidates


@dataclass
class RerankScores(OverFirstStage):
    """A direction's scores after fusion re-rank of each query's first-stage top-k.

    outside="keep": the re-ranked top-k come first (ordered by the fused score, ties kept), then
    every other candidate in first-stage order, so mAP@N stays defined. outside="exclude" (the
    LAVIS / paper convention): everything outside the top-k ties at the bottom.
    """

    first: EmbeddingScores
    model: Any
    image_features: Any
    text_features: Any
    k: int
    outside: str = "keep"
    device: str | torch.device = "cpu"
    pair_batch: int = 256
    cost: ScorerCost = field(default_factory=ScorerCost)
    fresh_blocks: bool = True

    def cell_bytes(self) -> int:
        return self.first.cell_bytes() + 4

    def block(self, start: int, stop: int) -> torch.Tensor:
        scores = self.first.block(start, stop).float()
        k = min(self.k, scores.shape[1])
        top = scores.topk(k, dim=1).indices  # (b, k)
        queries = torch.arange(start, stop).repeat_interleave(k).numpy()
        candidates = top.reshape(-1).cpu().numpy()
        if self.first.query_side == "image":
            fused = self._score_pairs(queries, candidates)
        else:
            fused = self._score_pairs(candidates, queries)
        fused = fused.view(stop - start, k).to(scores.device)
        # integer ranks of the fused scores (ties share a rank), stacked above everything else
        rank = (fused[:, :, None] < fused[:, None, :]).sum(-1)  # how many beat each
        if self.outside == "keep":
            base = torch.ceil(scores.max(dim=1, keepdim=True).values) + 1
            out = scores
            if float(base.abs().max()) + k > 2**23:  # float32 integers stop being exact
                base, out = base.double(), scores.double()
        else:
            base = torch.ones((stop - start, 1), device=scores.device)
            out = torch.zeros_like(scores)
        out.scatter_(1, top, base + (k - rank).float())
        return out

    def _score_pairs(self, image_index: np.ndarray, text_index: np.ndarray) -> torch.Tensor:
        parts = []
        for s in range(0, len(image_index), self.pair_batch):
            images = take(self.image_features, image_index[s : s + self.pair_batch], self.device)
            texts = take(self.text_features, text_index[s : s + self.pair_batch], self.device)
            began = time.perf_counter()
            with torch.inference_mode():
                fused = self.model.score_pairs(images, texts)
            if fused.is_cuda:
                torch.cuda.synchronize(fused.device)
            self.cost.seconds += time.perf_counter() - began
            self.cost.calls += 1
            self.cost.pairs += len(fused)
            parts.append(fused.detach().float().cpu())
        fused_all = torch.cat(parts)
        if not torch.isfinite(fused_all).all():
            raise ModelOutputError(f"{self.model.name}.score_pairs returned NaN or inf")
        return fused_all
