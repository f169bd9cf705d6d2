"""Stacked cross attention on given pairs: the (context[p], query[p]) cell of the grid, per p.

A cascade re-ranks a few candidates per query; asking `score` for one query at a time costs one
call (and its fixed overhead) per query. PairAttention lays out a flat batch of pairs that mixes
queries for the steps of fico_scan.xattn.CrossAttention (the same attention_weights and
aggregate), with each pair's tokens kept to itself. The norm of the attended context ||w|| takes
the cheaper of two equal forms per pair: a^T G a with the context's Gram matrix G (C x C x d, as
the grid, where G is shared by every query) when the context has no more tokens than the query,
else w itself (Q x C x d): for SCAN t2i at d = 1024 (36 regions, ~12 words) that is a third of
the Gram's work.

Masks: in SCAN and IMRAM exactly one side of a pair has padding (the caption's words), so the
pairs are laid out for attention_weights as that function already broadcasts its mask: with the
padded side as query, (1, C, P, Q) and a (P, Q) query mask; with the padded side as context,
(P, C, 1, Q) and a (P, C) context mask.
"""

from __future__ import annotations

import torch

from .xattn import EPS, Attention, CrossAttention, PairScorer, aggregate, attention_weights


def pair_weights(
    logits: torch.Tensor, attention: Attention, query_mask: torch.Tensor | None, context_mask: torch.Tensor | None
) -> torch.Tensor:
    """attention_weights of each pair's own logits (P, C, Q) -> (P, C, Q)."""
    if context_mask is None:
        grid = logits.permute(1, 0, 2).unsqueeze(0)  # (1, C, P, Q): the query mask (P, Q) applies as is
        return attention_weights(grid, attention, query_mask, None).squeeze(0).permute(1, 0, 2)
    if query_mask is not None:
        raise ValueError("pairs with padding on both sides are not supported (SCAN and IMRAM pad captions only)")
    return attention_weights(logits.unsqueeze(2), attention, None, context_mask).squeeze(2)


def pair_cosine(
    weights: torch.Tensor, logits: torch.Tensor, context: torch.Tensor, query_norms: torch.Tensor
) -> torch.Tensor:
    """attended_cosine per pair: weights, logits (P, C, Q); context (P, C, d); query_norms (P, Q) -> (P, Q)."""
    dot = (weights * logits).sum(dim=1)  # <query token, attended context>
    if context.shape[1] <= weights.shape[2]:
        gram = torch.bmm(context, context.transpose(1, 2))
        attended_norm = (torch.bmm(gram, weights) * weights).sum(dim=1).clamp(min=0).sqrt()
    else:
        attended_norm = torch.bmm(weights.transpose(1, 2), context).norm(dim=-1)
    return dot / (attended_norm * query_norms).clamp(min=EPS)


def pair_aggregate(values: torch.Tensor, mask: torch.Tensor | None, agg_func: str, lambda_lse: float) -> torch.Tensor:
    """aggregate over each pair's real query tokens: (P, Q) -> (P,)."""
    return aggregate(values.unsqueeze(0), mask, agg_func, lambda_lse).squeeze(0)


class PairAttention(CrossAttention):
    """Context item p (P, C, d) with query item p (P, Q, d) only: (P,) scores."""

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.context, tokens.transpose(1, 2))  # (P, C, Q)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return pair_weights(logits, self.attention, self.query_mask, self.context_mask)

    def cosine(self, weights: torch.Tensor) -> torch.Tensor:
        return pair_cosine(weights, self.query_logits, self.context, self.query_norms)

    def aggregate(self, values: torch.Tensor, agg_func: str, lambda_lse: float) -> torch.Tensor:
        return pair_aggregate(values, self.query_mask, agg_func, lambda_lse)

    def attended_sum(self, weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return torch.bmm(weights.transpose(1, 2), values)  # (P, Q, k)

    def as_query_side(self, per_query_token: torch.Tensor) -> torch.Tensor:
        return per_query_token

    def query_first(self, scores: torch.Tensor) -> torch.Tensor:
        return scores


def pair_chunks(n_pairs: int, elements_per_pair: int, budget_elements: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive chunks of pairs whose temporaries fit the budget."""
    step = max(1, budget_elements // max(1, elements_per_pair))
    return [(s, min(s + step, n_pairs)) for s in range(0, n_pairs, step)]


def pairwise(
    regions: torch.Tensor,
    words: torch.Tensor,
    lengths: torch.Tensor,
    pair_scorer: PairScorer,
    *,
    elements_per_pair: int,
    budget_elements: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """(P,) scores of the pairs (regions[p], words[p]), on chunks of pairs that bound the scorer's temporaries.

    A chunk is padded only to its own longest caption, as blockwise does. pair_scorer(regions,
    words, word_mask) -> (P,) for a chunk (the model's scorer with PairAttention).
    """
    out = torch.empty(regions.shape[0], dtype=dtype, device=regions.device)
    for s, e in pair_chunks(len(out), elements_per_pair, budget_elements):
        size = int(lengths[s:e].max())
        r, w = regions[s:e].to(dtype), words[s:e, :size].to(dtype)
        mask = torch.arange(size, device=w.device)[None, :] < lengths[s:e, None].to(w.device)
        out[s:e] = pair_scorer(r, w, mask)
    return out
