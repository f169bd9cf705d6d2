"""IMRAM's iterative matching with a recurrent attention memory, vectorised over both item sets.

As in fico_scan.xattn, a *context* set is attended over by the tokens of a *query* set: Text-IMRAM
= context images (regions), query captions (words); Image-IMRAM = context captions (words), query
images (regions). Per pair, per step j (the original xattn_score_Text_IMRAM / _Image_IMRAM):

    attended_j = func_attention(memory_j, context)           # memory_0 = the query tokens
    score_j    = mean over query tokens of cos(query token, attended_j)
    memory_j+1 = memory_j * g + tanh(linear([memory_j; attended_j])) * (1 - g),
                 g = sigmoid(gate([memory_j; attended_j]))    # then L2 unless no_IMRAM_norm

`linear` / `gate` act on the concatenation [memory; attended], so they are split into the
columns acting on each half: the attended half is projected per context token first
(W_c * sum_C a_C x_C = sum_C a_C (W_c x_C)), the memory half per query token at step 0. The
memory of later steps is specific to each pair: those steps cost one (2d x d) matrix product
per pair and query token, as in the original. The update after the last step is skipped (its
result is never used).
"""

from __future__ import annotations

import torch
from fico_scan.encoders import l2norm
from fico_scan.xattn import _inplace_ok, aggregate, attended_cosine, attention_weights, token_logits
from torch import nn


def iterative_scores(
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
    """Per-step (n_context, n_query) similarity matrices (IMRAM sums them)."""
    nc, n_ctx, d = context.shape
    nq, n_qry, _ = query.shape
    logits0 = token_logits(context, query)  # (nc, C, nq, Q): <context token, original query token>
    gram = torch.bmm(context, context.transpose(1, 2))
    query_norms = query.norm(dim=-1)
    if steps > 1:
        weight = torch.cat([linear.weight, gate.weight]).to(context.dtype)  # (2d, 2d): outputs [linear; gate]
        bias = torch.cat([linear.bias, gate.bias]).to(context.dtype)
        from_memory, from_attended = weight[:, :d], weight[:, d:]
        context_proj = context @ from_attended.T  # (nc, C, 2d)
        query_proj = torch.addmm(bias, query.reshape(-1, d), from_memory.T).view(nq, n_qry, 2 * d)
    memory: torch.Tensor | None = None  # (nc, nq, Q, d) once it differs per pair
    inplace = _inplace_ok(context, query, linear.weight, gate.weight)
    scores = []
    for step in range(steps):
        logits = logits0 if memory is None else torch.bmm(context, memory.view(nc, nq * n_qry, d).transpose(1, 2))
        weights = attention_weights(
            logits.view(nc, n_ctx, nq, n_qry),
            raw_feature_norm=raw_feature_norm,
            lambda_softmax=lambda_softmax,
            query_mask=query_mask,
            context_mask=context_mask,
        )
        cosine = attended_cosine(weights, logits0, gram, query_norms)
        scores.append(aggregate(cosine, query_mask, "Mean", 0.0))
        if step + 1 == steps:
            break
        pre = torch.bmm(weights.view(nc, n_ctx, nq * n_qry).transpose(1, 2), context_proj).view(nc, nq, n_qry, 2 * d)
        if memory is None:
            from_previous = query_proj.unsqueeze(0)
            previous = query.unsqueeze(0)
        else:
            from_previous = torch.addmm(bias, memory.reshape(-1, d), from_memory.T).view(nc, nq, n_qry, 2 * d)
            previous = memory
        del weights, logits
        if inplace:
            pre += from_previous
            g = pre[..., d:].sigmoid_()
            update = pre[..., :d].tanh_()
            memory = torch.addcmul(previous * g, update, 1 - g)
        else:
            pre = pre + from_previous
            g = pre[..., d:].sigmoid()
            memory = previous * g + pre[..., :d].tanh() * (1 - g)
        del pre, g, from_previous, previous
        if normalize_memory:
            memory = l2norm(memory, dim=-1)
    return scores
