"""The BERT that ADV uses: the early PyTorch port of Google BERT, with its parameter names.

Differences from transformers' BertModel that matter for loading and numerics:
LayerNorm parameters are called `gamma` / `beta` (eps 1e-12 inside the square root), GELU is
the exact erf form, padding is masked by adding -10000 to the attention scores, and the
token-type ids are all zero. Dropout layers hold no parameters and are off in eval mode, so
they are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MASKED_SCORE = -10000.0  # what the original adds to the scores of padding positions


@dataclass(frozen=True)
class BertShape:
    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    num_hidden_layers: int = 1
    vocab_size: int = 0
    max_position_embeddings: int = 512
    type_vocab_size: int = 2

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            from fico_registry.errors import ConfigError

            raise ConfigError(
                f"hidden size {self.hidden_size} is not a multiple of the {self.num_attention_heads} attention heads"
            )


class LayerNorm(nn.Module):
    """TF-style layer norm with the original's `gamma` / `beta` names."""

    def __init__(self, size: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(size))
        self.beta = nn.Parameter(torch.zeros(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.gamma, self.beta, self.eps)


class SelfAttention(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.heads = shape.num_attention_heads
        self.head_size = shape.hidden_size // shape.num_attention_heads
        self.query = nn.Linear(shape.hidden_size, shape.hidden_size)
        self.key = nn.Linear(shape.hidden_size, shape.hidden_size)
        self.value = nn.Linear(shape.hidden_size, shape.hidden_size)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_size).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, score_bias: torch.Tensor | None) -> torch.Tensor:
        q, k, v = (self._split_heads(proj(hidden)) for proj in (self.query, self.key, self.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)
        if score_bias is not None:
            scores = scores + score_bias
        context = scores.softmax(dim=-1) @ v
        batch, _, length, _ = context.shape
        return context.transpose(1, 2).reshape(batch, length, self.heads * self.head_size)


class DenseNorm(nn.Module):
    """dense -> residual add -> LayerNorm (the `output` blocks of a BERT layer)."""

    def __init__(self, in_size: int, out_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size, out_size)
        self.LayerNorm = LayerNorm(out_size)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.self = SelfAttention(shape)
        self.output = DenseNorm(shape.hidden_size, shape.hidden_size)

    def forward(self, hidden: torch.Tensor, score_bias: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(hidden, score_bias), hidden)


class Intermediate(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(shape.hidden_size, shape.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, as the original


class BertLayer(nn.Module):
    """One transformer layer: `attention.{self,output}`, `intermediate`, `output`."""

    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.attention = Attention(shape)
        self.intermediate = Intermediate(shape)
        self.output = DenseNorm(shape.intermediate_size, shape.hidden_size)

    def forward(self, hidden: torch.Tensor, score_bias: torch.Tensor | None = None) -> torch.Tensor:
        attended = self.attention(hidden, score_bias)
        return self.output(self.intermediate(attended), attended)


class Embeddings(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(shape.vocab_size, shape.hidden_size)
        self.position_embeddings = nn.Embedding(shape.max_position_embeddings, shape.hidden_size)
        self.token_type_embeddings = nn.Embedding(shape.type_vocab_size, shape.hidden_size)
        self.LayerNorm = LayerNorm(shape.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # ADV never sets token types: every token is segment 0
        summed = (
            self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        )
        return self.LayerNorm(summed)


class Encoder(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(shape) for _ in range(shape.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, score_bias: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, score_bias)
        return hidden


class Pooler(nn.Module):
    """Saved in every checkpoint; ADV's text branch never uses its output."""

    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(shape.hidden_size, shape.hidden_size)


class BertModel(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.embeddings = Embeddings(shape)
        self.encoder = Encoder(shape)
        self.pooler = Pooler(shape)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last layer's hidden states (batch, length, hidden)."""
        hidden = self.embeddings(input_ids)
        score_bias = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * MASKED_SCORE
        return self.encoder(hidden, score_bias)
