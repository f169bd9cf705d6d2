"""BEiT-3: a Multiway Transformer with Magneto sub-LN blocks, and its retrieval heads.

Module and parameter names follow torchscale's `BEiT3` (under `beit3.`) and unilm's
`BEiT3ForRetrieval`, so the published state dicts load with strict=True and no renaming.
The numerics follow torchscale 0.3.0 at inference (dropout and drop-path are off):

    x = token embeddings + positions (fairseq: position ids start at 2), padding rows zeroed
    per layer:  x = x + out_proj(inner_attn_ln(attention(self_attn_layer_norm(x))))
                x = x + fc2(ffn_layernorm(gelu(fc1(final_layer_norm(x)))))
    x = layer_norm(x)

with every Linear / LayerNorm a Multiway pair (A = vision expert, B = language expert).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fico_registry.errors import DataFormatError

from .config import Beit3Config
from .multiway import IMAGE_ONLY, TEXT_ONLY, Multiway, multiway

FAIRSEQ_POSITION_OFFSET = 2  # torchscale PositionalEmbedding: positions = arange(2, L + 2)


class VisionEmbedding(nn.Module):
    """Non-overlapping patches by a strided convolution, a CLS token in front."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.image_size = config.image_size
        size = config.patch_size
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, kernel_size=size, stride=size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        # Used only by masked-image pre-training; kept so the checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            size = f"{self.image_size}x{self.image_size}"
            raise DataFormatError(f"BEiT-3 expects {size} images, got {tuple(pixels.shape[-2:])}")
        patches = self.proj(pixels).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)


class PositionalEmbedding(nn.Embedding):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        positions = torch.arange(FAIRSEQ_POSITION_OFFSET, x.shape[1] + FAIRSEQ_POSITION_OFFSET, device=x.device)
        return F.embedding(positions, self.weight).unsqueeze(0)


def _layer_norm(config: Beit3Config) -> Multiway:
    return multiway(lambda: nn.LayerNorm(config.embed_dim, eps=config.layernorm_eps))


def _linear(config: Beit3Config) -> Multiway:
    return multiway(lambda: nn.Linear(config.embed_dim, config.embed_dim))


class MultiwaySelfAttention(nn.Module):
    """Scaled dot-product self-attention with Magneto's LayerNorm before the output projection."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.heads = config.attention_heads
        self.k_proj = _linear(config)
        self.v_proj = _linear(config)
        self.q_proj = _linear(config)
        self.out_proj = _linear(config)
        self.inner_attn_ln = _layer_norm(config)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None, split: int) -> torch.Tensor:
        batch, length, width = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = heads(self.q_proj(x, split)), heads(self.k_proj(x, split)), heads(self.v_proj(x, split))
        # torchscale scales q by head_dim ** -0.5 and fills padded keys with -inf before a float32
        # softmax; SDPA does the same (a boolean mask: True = may attend).
        keep = None if padding_mask is None else ~padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        out = out.transpose(1, 2).reshape(batch, length, width)
        return self.out_proj(self.inner_attn_ln(out, split), split)


class FeedForward(nn.Module):
    """fc1 -> GELU (computed in float32, as torchscale) -> sub-LN -> fc2."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.embed_dim, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.embed_dim)
        self.ffn_layernorm = nn.LayerNorm(config.ffn_dim, eps=config.layernorm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x)
        hidden = F.gelu(hidden.float()).type_as(hidden)
        return self.fc2(self.ffn_layernorm(hidden))


class EncoderLayer(nn.Module):
    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.self_attn = MultiwaySelfAttention(config)
        self.self_attn_layer_norm = _layer_norm(config)
        self.ffn = multiway(lambda: FeedForward(config))
        self.final_layer_norm = _layer_norm(config)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None, split: int) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x, split), padding_mask, split)
        return x + self.ffn(self.final_layer_norm(x, split), split)


class Encoder(nn.Module):
    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.embed_positions = Multiway(
            PositionalEmbedding(config.vision_positions, config.embed_dim),
            PositionalEmbedding(config.max_source_positions, config.embed_dim),
        )
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.layers))
        self.layer_norm = _layer_norm(config)  # normalize_output=True with pre-norm blocks

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None, split: int) -> torch.Tensor:
        x = tokens + self.embed_positions(tokens, split)
        if padding_mask is not None:
            x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
        for layer in self.layers:
            x = layer(x, padding_mask, split)
        return self.layer_norm(x, split)


class BEiT3(nn.Module):
    """The backbone: text / image embeddings and the shared Multiway encoder."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.text_embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.vision_embed = VisionEmbedding(config)
        self.encoder = Encoder(config)

    def forward(
        self,
        text_ids: torch.Tensor | None = None,
        pixels: torch.Tensor | None = None,
        text_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder output (B, L, D). Image-only and text-only passes run one expert; with both,
        image tokens come first and the text padding mask is extended over them."""
        if text_ids is None and pixels is None:
            raise DataFormatError("BEiT3.forward needs text_ids, pixels or both")
        if text_ids is None:
            return self.encoder(self.vision_embed(pixels), None, IMAGE_ONLY)
        if pixels is None:
            return self.encoder(self.text_embed(text_ids), text_padding_mask, TEXT_ONLY)
        image_tokens = self.vision_embed(pixels)
        tokens = torch.cat([image_tokens, self.text_embed(text_ids)], dim=1)
        mask = None
        if text_padding_mask is not None:
            image_mask = torch.zeros(image_tokens.shape[:2], dtype=torch.bool, device=tokens.device)
            mask = torch.cat([image_mask, text_padding_mask.bool()], dim=1)
        return self.encoder(tokens, mask, image_tokens.shape[1])


class BEiT3ForRetrieval(nn.Module):
    """unilm's retrieval model: CLS state -> modality head (no bias) -> L2 normalisation."""

    def __init__(self, config: Beit3Config) -> None:
        super().__init__()
        self.beit3 = BEiT3(config)
        self.language_head = nn.Linear(config.embed_dim, config.embed_dim, bias=False)
        self.vision_head = nn.Linear(config.embed_dim, config.embed_dim, bias=False)
        # The contrastive temperature of training, log(1 / 0.07) at init; unused for ranking.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        cls = self.beit3(pixels=pixels)[:, 0]
        return F.normalize(self.vision_head(cls), dim=-1)

    def encode_text_ids(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        cls = self.beit3(text_ids=text_ids, text_padding_mask=padding_mask.bool())[:, 0]
        return F.normalize(self.language_head(cls), dim=-1)
