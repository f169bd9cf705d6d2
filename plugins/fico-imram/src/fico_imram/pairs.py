"""IMRAM's iterative matching on given pairs: the (context[p], query[p]) cell of iterative_scores, per p.

The same steps as fico_imram.iterative (see there), with every tensor holding one pair per row
instead of every context x query combination: the memory of a pair is (Q, d), not (nc, nq, Q, d).
Attention weights, the attended cosine and the aggregation come from fico_scan.pairs.
"""

from __future__ import annotations

import torch
from fico_scan.encoders import l2norm
from fico_scan.pairs import pair_aggregate, pair_cosine, pair_weights
from torch import nn


def pair_iterative_scores(
    context: torch.Tensor,
    context_mask: torch.Tensor | None,
    query: torch.Tensor,
    query_mask: torch.Tensor | None,
    *,
    steps: int,
    raw_feature_norm: str,
    lambda_softmax: float,
    linear: nn.Linear,
    gate: nn.Linear,
    normalize_memory: bool,
) -> list[torch.Tensor]:
    """Per-step (P,) similarities of the pairs (context[p], query[p]) (IMRAM sums them)."""
    n_pairs, _, d = context.shape
    n_qry = query.shape[1]
    logits0 = torch.bmm(context, query.transpose(1, 2))  # (P, C, Q)
    query_norms = query.norm(dim=-1)
    if steps > 1:
        weight = torch.cat([linear.weight, gate.weight]).to(context.dtype)  # (2d, 2d): outputs [linear; gate]
        bias = torch.cat([linear.bias, gate.bias]).to(context.dtype)
        from_memory, from_attended = weight[:, :d], weight[:, d:]
        context_proj = context @ from_attended.T  # (P, C, 2d)
        query_proj = torch.addmm(bias, query.reshape(-1, d), from_memory.T).view(n_pairs, n_qry, 2 * d)
    memory: torch.Tensor | None = None  # (P, Q, d) after step 1
    scores = []
    for step in range(steps):
        logits = logits0 if memory is None else torch.bmm(context, memory.transpose(1, 2))
        weights = pair_weights(
            logits,
            raw_feature_norm=raw_feature_norm,
            lambda_softmax=lambda_softmax,
            query_mask=query_mask,
            context_mask=context_mask,
        )
        scores.append(pair_aggregate(pair_cosine(weights, logits0, context, query_norms), query_mask, "Mean", 0.0))
        if step + 1 == steps:
            break
        pre = torch.bmm(weights.transpose(1, 2), context_proj)  # (P, Q, 2d)
        if memory is None:
            pre, previous = pre + query_proj, query
        else:
            pre, previous = pre + torch.addmm(bias, memory.reshape(-1, d), from_memory.T).view_as(pre), memory
        g = pre[..., d:].sigmoid()
        memory = torch.addcmul(previous * g, pre[..., :d].tanh(), 1 - g)
        if normalize_memory:
            memory = l2norm(memory, dim=-1)
    return scores
