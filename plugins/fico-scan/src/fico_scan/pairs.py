"""Stacked cross attention on given pairs: the (context[p], query[p]) cell of xattn_scores, per p.

A cascade re-ranks a few candidates per query; asking `score` for one query at a time costs one
call (and its fixed overhead) per query. These functions score a flat batch of pairs that mixes
queries: the same steps as fico_scan.xattn (the same attention_weights and aggregate), with each
pair's tokens kept to itself. The norm of the attended context ||w|| takes the cheaper of two
equal forms per pair: a^T G a with the context's Gram matrix G (C x C x d, as xattn, where G is
shared by every query) when the context has no more tokens than the query, else w itself
(Q x C x d): for SCAN t2i at d = 1024 (36 regions, ~12 words) that is a third of the Gram's work.

Masks: in SCAN and IMRAM exactly one side of a pair has padding (the caption's words), so the
pairs are laid out for attention_weights as that function already broadcasts its mask: with the
padded side as query, (1, C, P, Q) and a (P, Q) query mask; with the padded side as context,
(P, C, 1, Q) and a (P, C) context mask.
"""

from __future__ import annotations

import torch

from .xattn import EPS, aggregate, attention_weights


def pair_weights(
    logits: torch.Tensor,
    *,
    raw_feature_norm: str,
    lambda_softmax: float,
    query_mask: torch.Tensor | None,
    context_mask: torch.Tensor | None,
) -> torch.Tensor:
    """attention_weights of each pair's own logits (P, C, Q) -> (P, C, Q)."""
    norm = {"raw_feature_norm": raw_feature_norm, "lambda_softmax": lambda_softmax}
    if context_mask is None:
        grid = logits.permute(1, 0, 2).unsqueeze(0)  # (1, C, P, Q): the query mask (P, Q) applies as is
        weights = attention_weights(grid, query_mask=query_mask, context_mask=None, **norm)
        return weights.squeeze(0).permute(1, 0, 2)
    if query_mask is not None:
        raise ValueError("pairs with padding on both sides are not supported (SCAN and IMRAM pad captions only)")
    weights = attention_weights(logits.unsqueeze(2), query_mask=None, context_mask=context_mask, **norm)
    return weights.squeeze(2)


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


def pair_xattn_scores(
    context: torch.Tensor,
    context_mask: torch.Tensor | None,
    query: torch.Tensor,
    query_mask: torch.Tensor | None,
    *,
    raw_feature_norm: str,
    lambda_softmax: float,
    agg_func: str,
    lambda_lse: float,
) -> torch.Tensor:
    """(P,) SCAN similarities of the pairs (context[p], query[p]): xattn_scores' diagonal, without the rest."""
    logits = torch.bmm(context, query.transpose(1, 2))  # (P, C, Q)
    weights = pair_weights(
        logits,
        raw_feature_norm=raw_feature_norm,
        lambda_softmax=lambda_softmax,
        query_mask=query_mask,
        context_mask=context_mask,
    )
    cosine = pair_cosine(weights, logits, context, query.norm(dim=-1))
    return pair_aggregate(cosine, query_mask, agg_func, lambda_lse)


def pair_chunks(n_pairs: int, elements_per_pair: int, budget_elements: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive chunks of pairs whose temporaries fit the budget."""
    step = max(1, budget_elements // max(1, elements_per_pair))
    return [(s, min(s + step, n_pairs)) for s in range(0, n_pairs, step)]
