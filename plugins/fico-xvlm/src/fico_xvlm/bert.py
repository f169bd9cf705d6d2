"""X-VLM's text / fusion encoder: BERT whose layers from `fusion_layer` on add cross-attention.

Parameter names are those of X-VLM's models/xbert.py BertModel (built without a pooler), so
`text_encoder.*` keys of the original checkpoints load unchanged. Numerics follow the original:
additive -10000 padding masks, scores divided by sqrt(head size), exact (erf) GELU, LayerNorm
after each residual. Cross-attention keys / values project from the image width (1024) to the
text width (768).

`encode_text` runs layers [0, fusion_layer) on token ids (mode='text' in the original);
`fuse` runs layers [fusion_layer, n) on those states with the image tokens (mode='fusion').
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MASKED = -10000.0  # what X-VLM's get_extended_attention_mask adds at padded positions


def extended_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) of 1 / 0 -> (B, 1, 1, L) of 0 / -10000, added to attention scores."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * MASKED


class BertEmbeddings(nn.Module):
    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden, padding_idx=config["pad_token_id"])
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])
        # The original saves this buffer; here it is derived (see weights.DERIVED_BUFFERS).
        positions = torch.arange(config["max_position_embeddings"]).expand((1, -1))
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        token_types = torch.zeros_like(input_ids)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_types)
        embeddings = embeddings + self.position_embeddings(self.position_ids[:, :length])
        return self.LayerNorm(embeddings)


class BertSelfAttention(nn.Module):
    """Multi-head attention; keys / values come from `context_width` features (cross-attention)."""

    def __init__(self, hidden: int, heads: int, context_width: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_size = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(context_width, hidden)
        self.value = nn.Linear(context_width, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor) -> torch.Tensor:
        query, key, value = (
            self._split(self.query(hidden)),
            self._split(self.key(context)),
            self._split(self.value(context)),
        )
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_size)
        if mask is not None:
            scores = scores + mask
        out = torch.matmul(scores.softmax(dim=-1), value).permute(0, 2, 1, 3).contiguous()
        return out.view(*out.shape[:-2], -1)


class BertOutput(nn.Module):
    """Projection back to the hidden width, residual added, LayerNorm (after attention and the feed-forward)."""

    def __init__(self, intermediate: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(intermediate, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden) + residual)


class BertSelfOutput(BertOutput):
    """The attention block's output: a hidden -> hidden BertOutput (same parameter names)."""

    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__(hidden, hidden, eps)


class BertAttention(nn.Module):
    def __init__(self, config: Mapping[str, Any], context_width: int) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.self = BertSelfAttention(hidden, config["num_attention_heads"], context_width)
        self.output = BertSelfOutput(hidden, config["layer_norm_eps"])

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, mask, context), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, intermediate)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(hidden))  # config_bert.json hidden_act "gelu" = erf GELU


class BertLayer(nn.Module):
    def __init__(self, config: Mapping[str, Any], *, cross_attention_width: int | None) -> None:
        super().__init__()
        hidden, intermediate = config["hidden_size"], config["intermediate_size"]
        self.attention = BertAttention(config, hidden)
        self.has_cross_attention = cross_attention_width is not None
        if cross_attention_width is not None:
            self.crossattention = BertAttention(config, cross_attention_width)
        self.intermediate = BertIntermediate(hidden, intermediate)
        self.output = BertOutput(intermediate, hidden, config["layer_norm_eps"])

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor | None, image_states: torch.Tensor | None = None
    ) -> torch.Tensor:
        hidden = self.attention(hidden, mask, hidden)
        if self.has_cross_attention:
            if image_states is None:
                raise ValueError("a fusion layer needs the image tokens")
            # The image attention mask is all ones in retrieval: its additive mask is zero, so omitted.
            hidden = self.crossattention(hidden, None, image_states)
        return self.output(self.intermediate(hidden), hidden)


class BertEncoder(nn.Module):
    def __init__(self, config: Mapping[str, Any], image_width: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            BertLayer(config, cross_attention_width=image_width if i >= config["fusion_layer"] else None)
            for i in range(config["num_hidden_layers"])
        )


class XBertModel(nn.Module):
    """`text_encoder`: embeddings + encoder.layer[0 .. n), no pooler."""

    def __init__(self, config: Mapping[str, Any], image_width: int) -> None:
        super().__init__()
        self.fusion_layer = config["fusion_layer"]
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config, image_width)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) ids and mask -> (B, L, hidden): the text-only layers (mode='text')."""
        hidden = self.embeddings(input_ids)
        mask = extended_mask(attention_mask, hidden.dtype)
        for layer in self.encoder.layer[: self.fusion_layer]:
            hidden = layer(hidden, mask)
        return hidden

    def fuse(self, text_states: torch.Tensor, attention_mask: torch.Tensor, image_states: torch.Tensor) -> torch.Tensor:
        """Text states of encode_text + image tokens -> (B, L, hidden) fused states (mode='fusion')."""
        hidden = text_states
        mask = extended_mask(attention_mask, hidden.dtype)
        for layer in self.encoder.layer[self.fusion_layer :]:
            hidden = layer(hidden, mask, image_states)
        return hidden
