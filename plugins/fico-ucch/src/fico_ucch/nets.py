"""UCCH's feature-mode hashing networks (nets/ImageNet.py and nets/TextNet.py, feature mode).

Each modality is one MLP held in `self.fc` (an nn.Sequential): Linear, ReLU, [Linear, ReLU]*, Linear,
so the Linear layers sit at fc.0, fc.2, fc.4, ... and the state dict keys are fc.{2k}.weight/bias.
The output goes through tanh and is divided by its L2 norm (`norm=True`); codes are its sign.
With no hidden layer the MLP is a single Linear (hiden_layer=1 in the original).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from fico_registry.errors import ConfigError


class HashMLP(nn.Module):
    """in_dim -> hidden[0] -> ... -> bits, ReLU between layers; forward: tanh, then L2 normalisation."""

    def __init__(self, in_dim: int, hidden: Sequence[int], bits: int, *, norm: bool = True) -> None:
        super().__init__()
        widths = [int(in_dim), *[int(h) for h in hidden], int(bits)]
        if any(w <= 0 for w in widths):
            raise ConfigError(f"UCCH layer widths must be positive, got {widths}")
        layers: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
            if i:
                layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Linear(width_in, width_out))
        self.fc = nn.Sequential(*layers)
        self.norm = norm
        self.in_dim, self.hidden, self.bits = widths[0], widths[1:-1], widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x).tanh()
        if self.norm:
            out = out / out.norm(dim=1, keepdim=True)  # as the original: no epsilon
        return out
