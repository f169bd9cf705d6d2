"""The X-VLM retrieval model (models/model_retrieval.py XVLM) with the original module names.

vision_encoder   Swin (timm), tokens (B, 1 + h*w, vision width)
text_encoder     BERT, layers [0, fusion_layer) text-only, the rest with cross-attention
vision_proj      Linear(vision width, embed_dim)   ITC image projection of the CLS token
text_proj        Linear(hidden, embed_dim)         ITC text projection of [CLS]
temp             ITC temperature (trained; the test-time ranking does not use it)
itm_head         Linear(h, 2h), LayerNorm(2h), GELU, Linear(2h, 2): match / no-match logits
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .bert import XBertModel
from .config import vision_width
from .swin import build_swin, swin_tokens


class XVLMRetrieval(nn.Module):
    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        width, hidden = vision_width(config), config["hidden_size"]
        self.vision_encoder = build_swin(config)
        self.text_encoder = XBertModel(config, image_width=width)
        self.vision_proj = nn.Linear(width, config["embed_dim"])
        self.text_proj = nn.Linear(hidden, config["embed_dim"])
        self.temp = nn.Parameter(torch.ones([]) * config["temp"])
        self.itm_head = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.LayerNorm(2 * hidden), nn.GELU(), nn.Linear(2 * hidden, 2)
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_proj.weight.dtype

    def image_states(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, s, s) normalised pixels -> (B, 1 + h*w, vision width) image tokens."""
        return swin_tokens(self.vision_encoder, pixels.to(self.dtype))

    def image_embeds(self, image_states: torch.Tensor) -> torch.Tensor:
        """ITC: L2-normalised projection of the CLS (average-pooled) token -> (B, embed_dim)."""
        return F.normalize(self.vision_proj(image_states[:, 0, :]), dim=-1)

    def text_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text_encoder.encode_text(input_ids, attention_mask)

    def text_embeds(self, text_states: torch.Tensor) -> torch.Tensor:
        """ITC: L2-normalised projection of the [CLS] state -> (B, embed_dim)."""
        return F.normalize(self.text_proj(text_states[:, 0, :]), dim=-1)

    def itm_logit(
        self, image_states: torch.Tensor, text_states: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Paired rows -> (n,) positive-class ITM logit of the fused [CLS] (Retrieval.evaluation)."""
        fused = self.text_encoder.fuse(text_states, attention_mask, image_states)
        return self.itm_head(fused[:, 0, :])[:, 1]


def random_model(config: Mapping[str, Any]) -> XVLMRetrieval:
    """Reproducible random weights (seeded; the caller's RNG state is restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.get("seed", 0)))
        return XVLMRetrieval(config)
