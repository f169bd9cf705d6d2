"""General retrieval: any query set against any candidate set, scored by judged relevance.

The two FiCo directions are special cases (images against captions with the instance map as
judgments, and the reverse); universal multimodal retrieval (M-BEIR style) retrieves keys that
are images, texts or fused image+text pairs. `fuse_keys` builds such fused keys from a dual
encoder's two embeddings; `evaluate_retrieval` ranks candidates for every query with the same
similarity measures and judged metrics as the rest of the evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fico_registry.data.judgments import Judgments
from fico_registry.errors import OptionError, ShapeError
from fico_registry.evaluator.judged import judged_metrics
from fico_registry.evaluator.similarity import as_tensor, prepare_embeddings, score_block


def fuse_keys(images: Any, texts: Any, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[np.ndarray, dict[str, Any]]:
    """One key per (image, text) pair: w_image * unit(image) + w_text * unit(text), row by row.

    Returns the (n, d) float32 keys and a record of how they were made (goes into reports).
    """
    img, txt = as_tensor(images, "images").double(), as_tensor(texts, "texts").double()
    if img.ndim != 2 or img.shape != txt.shape:
        raise ShapeError(
            f"fuse_keys pairs row i of images with row i of texts: got {tuple(img.shape)} and {tuple(txt.shape)}"
        )
    w_img, w_txt = (float(w) for w in weights)
    if not (np.isfinite(w_img) and np.isfinite(w_txt)) or w_img < 0 or w_txt < 0 or w_img + w_txt == 0:
        raise OptionError(f"weights must be two non-negative finite numbers, not both 0; got {weights!r}")
    keys = w_img * torch.nn.functional.normalize(img, dim=1) + w_txt * torch.nn.functional.normalize(txt, dim=1)
    return keys.float().numpy(), {"fusion": "weighted sum of L2-normalised embeddings", "weights": [w_img, w_txt]}


@dataclass
class RetrievalReport:
    """Judged metrics of one query set against one candidate set."""

    judged: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"judged": self.judged, "settings": self.settings}


def evaluate_retrieval(
    queries: Any,
    candidates: Any,
    judgments: Judgments | Mapping[str, Judgments],
    *,
    measure: str = "cosine",
    recall_ks: Sequence[int] = (1, 5, 10),
    ndcg_ks: Sequence[int] = (10,),
    ties: str = "expected",
    gain: str = "linear",
    device: str = "cpu",
    block_rows: int = 256,
    bits: int | None = None,
    keys: Mapping[str, Any] | None = None,
) -> RetrievalReport:
    """Rank every candidate for every query and report judged metrics for each named judgment set.

    queries (n_q, d) and candidates (n_c, d): embeddings (or codes with measure="hamming"), in any
    modality; judgments: one Judgments (named "judged") or a mapping name -> Judgments, each
    (n_q, n_c). keys: optional description of what the queries / candidates are (recorded).
    """
    named = {"judged": judgments} if isinstance(judgments, Judgments) else dict(judgments)
    dev = torch.device(device)
    q, c, info = prepare_embeddings(queries, candidates, measure, dev, bits=bits)
    for name, judged in named.items():
        judged.check_shape(q.shape[0], c.shape[0], f"judgments {name!r}")
    n_bits = int(info.get("bits", 0))

    def score_rows(lo: int, hi: int) -> torch.Tensor:
        return score_block(q[lo:hi], c, measure, query_side="image", n_bits=n_bits)

    results = {
        name: judged_metrics(
            score_rows, judged, recall_ks=recall_ks, ndcg_ks=ndcg_ks, ties=ties, gain=gain, block_rows=block_rows
        )
        for name, judged in named.items()
    }
    settings = {
        "measure": measure,
        "ties": ties,
        "gain": gain,
        "n_queries": int(q.shape[0]),
        "n_candidates": int(c.shape[0]),
        **{k: v for k, v in info.items() if k in ("bits", "work_dtype", "input_dtype")},
        **({"keys": dict(keys)} if keys else {}),
    }
    return RetrievalReport(results, settings)
