"""ADV's image branch for region features: `image_net.TransformerBinaryMapping`."""

from __future__ import annotations

import torch
from torch import nn

from .bert import BertLayer, BertShape
from .hashing import IMAGE_SCALE, median_centred_tanh


class TransformerBinaryMapping(nn.Module):
    """mapping (img_dim -> hidden) -> one BERT layer over the regions -> mapping2 (-> final_dims).

    Keys: `mapping.*`, `layer.attention.self.{query,key,value}.*`, `layer.attention.output.*`,
    `layer.intermediate.dense.*`, `layer.output.*`, `mapping2.*` (t_cfg.json: hidden 256, 16 heads, FFN 2048).
    """

    def __init__(self, img_dim: int, final_dims: int, shape: BertShape) -> None:
        super().__init__()
        self.mapping = nn.Linear(img_dim, shape.hidden_size)
        self.layer = BertLayer(shape)
        self.mapping2 = nn.Linear(shape.hidden_size, final_dims)

    def forward(self, regions: torch.Tensor) -> torch.Tensor:
        """(n, regions, img_dim) -> relaxed codes in (-1, 1), (n, final_dims)."""
        # every region is attended (the original's all-ones mask adds 0 to every score)
        hidden = self.layer(self.mapping(regions))
        probs = self.mapping2(hidden).float().softmax(dim=-1)
        return median_centred_tanh(probs.mean(dim=1), IMAGE_SCALE)
