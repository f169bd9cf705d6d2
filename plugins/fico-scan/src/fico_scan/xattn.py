"""Stacked cross attention, vectorised over both sets of items (SCAN's xattn_score_t2i / _i2t).

One function serves both directions. A *context* set (items with tokens to attend over) and a
*query* set (items whose tokens attend): t2i = context images (regions), query captions
(words); i2t = context captions (words), query images (regions). For every pair and every
query token, as the original `func_attention`:

    s[c, C, q, Q] = <context token C, query token Q>
    raw norm of s over the query tokens Q (clipped_l2norm: LeakyReLU(0.1) then L2, ...)
    a = softmax over the context tokens C of lambda_softmax * s
    weighted context  w = sum_C a * context_C
    cos(query_Q, w) = <query_Q, w> / max(||query_Q|| ||w||, eps)
    aggregated over Q (LogSumExp with lambda_lse, Mean, Max, Sum)

<query_Q, w> and ||w|| are computed without materialising w (one d-vector per pair and token):
<query_Q, w> = sum_C a s, and ||w||^2 = a^T G a with G the context's token Gram matrix. That is
the same quantity, a d/C times cheaper. Padded words are excluded by masks; every pair's score
depends only on that pair, so any split of the items into blocks gives the same numbers.

The steps are written once, in CrossAttention, over a tensor layout: GridAttention (here) pairs
every context item with every query item (`score`), fico_scan.pairs.PairAttention item p with
item p only (`score_pairs`). xattn_scores is SCAN's score in either layout; IMRAM's iterative
matching (fico_imram.iterative) runs the same attention step on a recurrent memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

EPS = 1e-8


@dataclass(frozen=True)
class Attention:
    """func_attention's settings: the norm of the raw logits (opt.raw_feature_norm) and the softmax temperature."""

    raw_feature_norm: str
    lambda_softmax: float

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Attention:
        return cls(options["raw_feature_norm"], float(options["lambda_softmax"]))


def token_logits(context: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """s[c, C, q, Q] = <context[c, C], query[q, Q]> for every pair of items."""
    nc, n_ctx, d = context.shape
    nq, n_qry, _ = query.shape
    return (context.reshape(nc * n_ctx, d) @ query.reshape(nq * n_qry, d).T).view(nc, n_ctx, nq, n_qry)


def _inplace_ok(*tensors: torch.Tensor) -> bool:
    """In-place steps save memory at evaluation; under autograd (training) they would break backward."""
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def attention_weights(
    logits: torch.Tensor, attention: Attention, query_mask: torch.Tensor | None, context_mask: torch.Tensor | None
) -> torch.Tensor:
    """func_attention's weights a[c, C, q, Q]: raw norm over Q, then softmax over C.

    query_mask (nq, Q) / context_mask (nc, C): True for real tokens, False for padding.
    """
    raw_feature_norm, lambda_softmax = attention.raw_feature_norm, attention.lambda_softmax
    inplace = _inplace_ok(logits)
    qmask = None if query_mask is None or bool(query_mask.all()) else query_mask[None, None]  # (1, 1, nq, Q)
    if raw_feature_norm == "softmax":
        x = logits if qmask is None else logits.masked_fill(~qmask, float("-inf"))
        x = x.softmax(dim=3)
    elif raw_feature_norm in ("l2norm", "clipped_l2norm", "clipped"):
        x = logits if raw_feature_norm == "l2norm" else F.leaky_relu(logits, 0.1)
        if raw_feature_norm != "clipped":
            if qmask is not None:  # padded words hold zero features: this only guards against NaN padding
                x = x * qmask
            squares = x.pow(2).sum(dim=3, keepdim=True)
            if context_mask is not None and not bool(context_mask.all()):
                # padded context tokens (zero features, dropped by the softmax below) would give 0 / 0 in backward
                squares = squares.masked_fill(~context_mask[:, :, None, None], 1.0)
            norm = squares.sqrt_().add_(EPS) if inplace else squares.sqrt() + EPS
            x = x.div_(norm) if inplace and x is not logits else x / norm
    elif raw_feature_norm == "no_norm":
        x = logits
    else:
        raise ValueError(f"unknown raw_feature_norm {raw_feature_norm!r}")
    # from here on x is a fresh tensor (logits is reused by the caller)
    x = x.mul_(lambda_softmax) if inplace and x is not logits else x * lambda_softmax
    if context_mask is not None and not bool(context_mask.all()):
        fill = ~context_mask[:, :, None, None]
        x = x.masked_fill_(fill, float("-inf")) if inplace else x.masked_fill(fill, float("-inf"))
    return x.softmax(dim=1)


def attended_cosine(
    weights: torch.Tensor, logits: torch.Tensor, gram: torch.Tensor, query_norms: torch.Tensor
) -> torch.Tensor:
    """cos(query token, attention-weighted context) per (c, q, Q).

    weights, logits: (nc, C, nq, Q); gram: (nc, C, C) context token Gram matrices;
    query_norms: (nq, Q) norms of the query tokens the cosine is taken with.
    As the original cosine_similarity: <x1, x2> / max(||x1|| ||x2||, eps).
    """
    nc, n_ctx, nq, n_qry = weights.shape
    inplace = _inplace_ok(weights, logits, gram, query_norms)
    dot = (weights * logits).sum(dim=1)  # <query, weighted context>
    flat = weights.reshape(nc, n_ctx, nq * n_qry)
    spread = torch.bmm(gram, flat)
    if inplace:
        squared = spread.mul_(flat).sum(dim=1).view(nc, nq, n_qry)  # ||weighted context||^2
        return dot.div_(squared.clamp_(min=0).sqrt_().mul_(query_norms[None]).clamp_(min=EPS))
    squared = (spread * flat).sum(dim=1).view(nc, nq, n_qry)
    return dot / (squared.clamp(min=0).sqrt() * query_norms[None]).clamp(min=EPS)


def aggregate(values: torch.Tensor, mask: torch.Tensor | None, agg_func: str, lambda_lse: float) -> torch.Tensor:
    """Reduce the last axis (query tokens) of (nc, nq, Q) over its real tokens -> (nc, nq)."""
    if mask is not None:
        mask = mask[None]  # (1, nq, Q)
        values = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    if agg_func == "LogSumExp":
        # the original's exp -> sum -> log (no max shift: |cos| <= 1 keeps it finite)
        e = (values * lambda_lse).exp()
        if mask is not None:
            e = e * mask
        return e.sum(dim=-1).log() / lambda_lse
    if agg_func == "Max":
        if mask is not None:
            values = values.masked_fill(~mask, float("-inf"))
        return values.max(dim=-1).values
    if agg_func == "Sum":
        return values.sum(dim=-1)
    if agg_func == "Mean":
        count = values.shape[-1] if mask is None else mask.sum(dim=-1)
        return values.sum(dim=-1) / count
    raise ValueError(f"unknown agg_func {agg_func!r}")


class CrossAttention(ABC):
    """One direction of func_attention between a context set and a query set, in some tensor layout.

    The steps are written here once; a subclass lays the tokens out and says how each step is
    computed there. Tensors "laid out as the query side" hold one row per query token of every
    scored pair: (nc, nq, Q, ...) on the grid (or (1, nq, Q, ...) when shared by every context
    item), (P, Q, ...) for given pairs.
    """

    def __init__(
        self,
        context: torch.Tensor,
        context_mask: torch.Tensor | None,
        query: torch.Tensor,
        query_mask: torch.Tensor | None,
        attention: Attention,
    ) -> None:
        self.context, self.context_mask = context, context_mask
        self.query, self.query_mask = query, query_mask
        self.attention = attention
        self.query_norms = query.norm(dim=-1)
        self.query_logits = self.logits(query)  # <context token, query token>: what every cosine is taken with

    def attend(self, logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights, cosine): the attention weights from `logits` (by default the query tokens' own), and
        cos(query token, attention-weighted context) for every query token."""
        weights = self.weights(self.query_logits if logits is None else logits)
        return weights, self.cosine(weights)

    # the layout: how each step is computed on this arrangement of pairs
    @abstractmethod
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """<context token, token> for the query tokens, or for tokens laid out as the query side."""

    @abstractmethod
    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        """attention_weights of logits laid out as this layout's."""

    @abstractmethod
    def cosine(self, weights: torch.Tensor) -> torch.Tensor:
        """cos(query token, attended context), laid out as the query side (without a feature axis)."""

    @abstractmethod
    def aggregate(self, values: torch.Tensor, agg_func: str, lambda_lse: float) -> torch.Tensor:
        """Reduce per-query-token values over each pair's real query tokens: one score per pair."""

    @abstractmethod
    def attended_sum(self, weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """sum_C a[C] values[c, C] per pair and query token, laid out as the query side.

        values (n context items, C, k): a per-context-token projection (IMRAM's memory update).
        """

    @abstractmethod
    def as_query_side(self, per_query_token: torch.Tensor) -> torch.Tensor:
        """A tensor of the query items' tokens, broadcastable against those laid out as the query side."""

    @abstractmethod
    def query_first(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores with the query items on the first axis (the grid's (nc, nq) transposed)."""


class GridAttention(CrossAttention):
    """Every context item (nc, C, d) with every query item (nq, Q, d): (nc, nq) scores."""

    @cached_property
    def gram(self) -> torch.Tensor:
        """(nc, C, C) context token Gram matrices, shared by every query item."""
        return torch.bmm(self.context, self.context.transpose(1, 2))

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim == 3:  # the query items' tokens (nq, Q, d), the same for every context item
            return token_logits(self.context, tokens)
        nc, nq, n_qry, d = tokens.shape  # tokens specific to each pair
        flat = torch.bmm(self.context, tokens.view(nc, nq * n_qry, d).transpose(1, 2))
        return flat.view(nc, self.context.shape[1], nq, n_qry)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return attention_weights(logits, self.attention, self.query_mask, self.context_mask)

    def cosine(self, weights: torch.Tensor) -> torch.Tensor:
        return attended_cosine(weights, self.query_logits, self.gram, self.query_norms)

    def aggregate(self, values: torch.Tensor, agg_func: str, lambda_lse: float) -> torch.Tensor:
        return aggregate(values, self.query_mask, agg_func, lambda_lse)

    def attended_sum(self, weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        nc, n_ctx, nq, n_qry = weights.shape
        return torch.bmm(weights.view(nc, n_ctx, nq * n_qry).transpose(1, 2), values).view(nc, nq, n_qry, -1)

    def as_query_side(self, per_query_token: torch.Tensor) -> torch.Tensor:
        return per_query_token.unsqueeze(0)

    def query_first(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.T


def xattn_scores(cross: CrossAttention, agg_func: str, lambda_lse: float) -> torch.Tensor:
    """SCAN's similarities of the pairs the layout holds: (nc, nq) on the grid, (P,) for given pairs."""
    _, cosine = cross.attend()
    return cross.aggregate(cosine, agg_func, lambda_lse)


PairScorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def blockwise(
    regions: torch.Tensor,
    words: torch.Tensor,
    lengths: torch.Tensor,
    pair_scorer: PairScorer,
    *,
    elements_per_pair: Callable[[int], int],
    budget_elements: int,
    dtype: torch.dtype,
    caption_group: int = 256,
) -> torch.Tensor:
    """(n_img, n_txt) scores, computed on chunks that bound the scorer's temporaries.

    Captions are sorted by length and grouped, so a chunk is padded only to its own longest
    caption, not to max_words. pair_scorer(regions, words, word_mask) -> (n_img, n_txt) for a
    chunk; elements_per_pair(n_words) estimates its temporaries per (image, caption) pair.
    """
    n_img, n_txt = regions.shape[0], words.shape[0]
    out = torch.empty(n_img, n_txt, dtype=dtype, device=regions.device)
    if n_img == 0 or n_txt == 0:
        return out
    lengths = lengths.to(regions.device)
    order = torch.argsort(lengths, stable=True)
    regions = regions.to(dtype)
    for start in range(0, n_txt, caption_group):
        idx = order[start : start + caption_group]
        n_words = int(lengths[idx].max())
        group_words = words[idx, :n_words].to(dtype)
        group_mask = torch.arange(n_words, device=words.device)[None, :] < lengths[idx, None]
        per_pair = max(1, elements_per_pair(n_words))
        caps_per_chunk = max(1, min(len(idx), budget_elements // per_pair))
        for c0 in range(0, len(idx), caps_per_chunk):
            c1 = min(c0 + caps_per_chunk, len(idx))
            imgs_per_chunk = max(1, budget_elements // (per_pair * (c1 - c0)))
            for i0 in range(0, n_img, imgs_per_chunk):
                i1 = min(i0 + imgs_per_chunk, n_img)
                block = pair_scorer(regions[i0:i1], group_words[c0:c1], group_mask[c0:c1])
                out[i0:i1, idx[c0:c1]] = block.to(dtype)
    return out
