"""DADH's generator (models/gen_model.py, GEN) on precomputed features, with the original module names.

Per modality, `image_module` / `text_module` = [Linear, BatchNorm1d, ReLU(, Dropout(0.5))] x 3 with
widths hidden, hidden // 2, hidden // 4 (8192, 4096, 2048 by default), then
`hash_module` = ModuleDict(image=Sequential(Linear(hidden // 4, bits), Tanh), text=...). Without
dropout the Linear layers sit at indices 0, 3, 6 (BatchNorm at 1, 4, 7); with dropout at 0, 4, 8.
Codes are sign(tanh(...)). The CNN-F image network of the original is unused on features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fico_registry.errors import ConfigError


def branch(in_dim: int, widths: Sequence[int], dropout: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    previous = in_dim
    for width in widths:
        layers += [nn.Linear(previous, width, bias=True), nn.BatchNorm1d(width), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        previous = width
    return nn.Sequential(*layers)


def hidden_widths(hidden_dim: int) -> tuple[int, int, int]:
    return (hidden_dim, hidden_dim // 2, hidden_dim // 4)


class Generator(nn.Module):
    """GEN without CNN-F: features -> (image codes, text codes, image hidden, text hidden)."""

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        bits: int,
        *,
        image_widths: Sequence[int],
        text_widths: Sequence[int],
        dropout: bool = False,
    ) -> None:
        super().__init__()
        widths = [image_dim, text_dim, bits, *image_widths, *text_widths]
        if len(image_widths) != 3 or len(text_widths) != 3 or any(int(w) <= 0 for w in widths):
            raise ConfigError(
                f"DADH needs three positive hidden widths per modality, got {list(image_widths)} / {list(text_widths)}"
            )
        if image_widths[-1] != text_widths[-1]:
            raise ConfigError("DADH's image and text branches must end in the same width (the discriminator input)")
        self.image_module = branch(image_dim, image_widths, dropout)
        self.text_module = branch(text_dim, text_widths, dropout)
        self.hash_module = nn.ModuleDict(
            {
                "image": nn.Sequential(nn.Linear(image_widths[-1], bits, bias=True), nn.Tanh()),
                "text": nn.Sequential(nn.Linear(text_widths[-1], bits, bias=True), nn.Tanh()),
            }
        )
        self.image_dim, self.text_dim, self.bits = int(image_dim), int(text_dim), int(bits)
        self.image_widths, self.text_widths = tuple(image_widths), tuple(text_widths)
        self.dropout = dropout

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f_image = self.image_module(images)
        f_text = self.text_module(texts)
        return self.hash_module["image"](f_image), self.hash_module["text"](f_text), f_image, f_text

    def image_codes(self, images: torch.Tensor) -> torch.Tensor:
        """tanh outputs (GEN.generate_img_code)."""
        return self.hash_module["image"](self.image_module(images))

    def text_codes(self, texts: torch.Tensor) -> torch.Tensor:
        return self.hash_module["text"](self.text_module(texts))
