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

The attention step and the tensor layout come from fico_scan.xattn: on the grid
(GridAttention, every context x query combination: the memory is (nc, nq, Q, d)) for `score`,
on given pairs (fico_scan.pairs.PairAttention, one pair per row: the memory is (P, Q, d)) for
`score_pairs`.
"""

from __future__ import annotations

import torch
from fico_scan.encoders import l2norm
from fico_scan.xattn import CrossAttention, _inplace_ok
from torch import nn


def iterative_scores(
    cross: CrossAttention, *, steps: int, linear: nn.Linear, gate: nn.Linear, normalize_memory: bool
) -> list[torch.Tensor]:
    """Per-step similarities of the pairs the layout holds (IMRAM sums them): (nc, nq) or (P,) each."""
    context, query = cross.context, cross.query
    d = context.shape[-1]
    if steps > 1:
        weight = torch.cat([linear.weight, gate.weight]).to(context.dtype)  # (2d, 2d): outputs [linear; gate]
        bias = torch.cat([linear.bias, gate.bias]).to(context.dtype)
        from_memory, from_attended = weight[:, :d], weight[:, d:]
        context_proj = context @ from_attended.T  # (n context items, C, 2d)
        query_proj = torch.addmm(bias, query.reshape(-1, d), from_memory.T).view(*query.shape[:-1], 2 * d)
    memory: torch.Tensor | None = None  # laid out as the query side once it differs per pair
    inplace = _inplace_ok(context, query, linear.weight, gate.weight)
    scores = []
    for step in range(steps):
        weights, cosine = cross.attend(None if memory is None else cross.logits(memory))
        scores.append(cross.aggregate(cosine, "Mean", 0.0))
        if step + 1 == steps:
            break
        pre = cross.attended_sum(weights, context_proj)  # the attended half of [memory; attended], projected
        if memory is None:
            from_previous = cross.as_query_side(query_proj)
            previous = cross.as_query_side(query)
        else:
            from_previous = torch.addmm(bias, memory.reshape(-1, d), from_memory.T).view_as(pre)
            previous = memory
        del weights, cosine
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
