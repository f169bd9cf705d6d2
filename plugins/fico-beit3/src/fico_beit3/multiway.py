"""The Multiway switch: one module per modality ("expert"), chosen by token position.

BEiT-3 keeps two copies of every projection and LayerNorm: `A` for image tokens and `B` for
text tokens. A sequence is routed by a split position, as torchscale's MultiwayNetwork:
-1 = every token is an image token (A), 0 = every token is text (B), k > 0 = the first k
tokens (along dim 1) go to A and the rest to B.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

IMAGE_ONLY = -1
TEXT_ONLY = 0


class Multiway(nn.Module):
    def __init__(self, vision: nn.Module, language: nn.Module) -> None:
        super().__init__()
        self.A = vision
        self.B = language

    def forward(self, x: torch.Tensor, split: int) -> torch.Tensor:
        if split == IMAGE_ONLY:
            return self.A(x)
        if split == TEXT_ONLY:
            return self.B(x)
        return torch.cat([self.A(x[:, :split]), self.B(x[:, split:])], dim=1)


def multiway(make: Callable[[], nn.Module]) -> Multiway:
    """Two independent modules of the same shape, one per modality."""
    return Multiway(make(), make())
