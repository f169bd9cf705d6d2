"""SCAN's region and word encoders, with the original parameter names.

Image: `fc` Linear(img_dim, embed_size) (or its weight-norm version: fc.weight_g, fc.weight_v,
fc.bias) applied to each region, then L2 over the feature axis (eps 1e-8 added to the norm)
unless no_imgnorm. Text: `embed` Embedding(V, word_dim) -> `rnn` GRU(word_dim, embed_size,
num_layers, batch_first, bidirectional=bi_gru); a bi-GRU's two directions are averaged; L2 per
word unless no_txtnorm. IMRAM uses the same modules (its linear is named `fc_local`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def l2norm(x: torch.Tensor, dim: int, eps: float = 1e-8) -> torch.Tensor:
    """x / (||x|| + eps): the originals' l2norm (eps added to the norm, not a clamp)."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


class WeightNormLinear(nn.Module):
    """torch weight_norm(Linear, dim=None): weight = g * v / ||v|| with one scalar g."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        linear = nn.Linear(in_features, out_features)  # torch's init, then g = ||v|| as weight_norm sets it
        self.weight_g = nn.Parameter(linear.weight.detach().norm())
        self.weight_v = nn.Parameter(linear.weight.detach().clone())
        self.bias = nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm())
        return F.linear(x, weight, self.bias)


class RegionEncoder(nn.Module):
    """EncoderImagePrecomp / EncoderImageWeightNormPrecomp: per-region projection + L2."""

    def __init__(self, img_dim: int, embed_size: int, *, precomp_enc_type: str, no_imgnorm: bool, fc_name: str = "fc"):
        super().__init__()
        self.fc_name = fc_name
        self.img_dim = img_dim
        self.no_imgnorm = no_imgnorm
        if precomp_enc_type == "weight_norm":
            layer: nn.Module = WeightNormLinear(img_dim, embed_size)
        else:
            layer = nn.Linear(img_dim, embed_size)
            bound = (6.0 / (img_dim + embed_size)) ** 0.5  # the originals' Xavier init
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.zeros_(layer.bias)
        self.add_module(fc_name, layer)

    def forward(self, regions: torch.Tensor) -> torch.Tensor:
        features = getattr(self, self.fc_name)(regions)
        return features if self.no_imgnorm else l2norm(features, dim=-1)


class WordEncoder(nn.Module):
    """EncoderText: per-word features (batch, words, embed_size), zero at padded positions."""

    def __init__(
        self, vocab_size: int, word_dim: int, embed_size: int, num_layers: int, *, bi_gru: bool, no_txtnorm: bool
    ):
        super().__init__()
        self.embed_size = embed_size
        self.bi_gru = bi_gru
        self.no_txtnorm = no_txtnorm
        self.embed = nn.Embedding(vocab_size, word_dim)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self.rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True, bidirectional=bi_gru)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        words, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        if self.bi_gru:
            half = words.shape[2] // 2
            words = (words[:, :, :half] + words[:, :, half:]) / 2
        return words if self.no_txtnorm else l2norm(words, dim=-1)


def upgrade_legacy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """PyTorch 0.3 (SCAN's version) saved weight_norm's scalar g with shape (1,); today it is ()."""
    return {k: v.reshape(()) if k.endswith("weight_g") and tuple(v.shape) == (1,) else v for k, v in state.items()}


def build_encoders(
    options: Mapping[str, Any], vocab_rows: int, *, fc_name: str = "fc"
) -> tuple[RegionEncoder, WordEncoder]:
    image = RegionEncoder(
        int(options["img_dim"]),
        int(options["embed_size"]),
        precomp_enc_type=options["precomp_enc_type"],
        no_imgnorm=bool(options["no_imgnorm"]),
        fc_name=fc_name,
    )
    text = WordEncoder(
        vocab_rows,
        int(options["word_dim"]),
        int(options["embed_size"]),
        int(options["num_layers"]),
        bi_gru=bool(options["bi_gru"]),
        no_txtnorm=bool(options["no_txtnorm"]),
    )
    return image, text
