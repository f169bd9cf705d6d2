"""Images as unilm beit3 evaluates them: RGB, Resize((s, s), bicubic), ToTensor, Normalize(0.5, 0.5).

torchvision's Resize on a PIL image calls PIL's resize with the same filter, and ToTensor is
uint8 / 255, so PIL and torch alone give the same numbers (the tests check this against
torchvision's transforms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fico_registry.errors import DataFormatError


class ImagePreprocessor:
    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], *, model: str = "beit3") -> None:
        self.image_size = int(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.model = model

    def __call__(self, image: Any) -> torch.Tensor:
        """One PIL image -> float32 (3, image_size, image_size)."""
        from PIL import Image

        if not isinstance(image, Image.Image):
            raise DataFormatError(f"{self.model} expects PIL images (or a stacked tensor), got {type(image).__name__}")
        size = (self.image_size, self.image_size)
        resized = image.convert("RGB").resize(size, Image.BICUBIC)
        pixels = torch.from_numpy(np.array(resized, dtype=np.uint8, copy=True)).permute(2, 0, 1)
        return (pixels.to(torch.float32).div(255) - self.mean) / self.std

    def batch(self, batch: Any) -> torch.Tensor:
        """A list of PIL images, or a (B, 3, s, s) tensor of __call__ outputs -> (B, 3, s, s) float32."""
        if isinstance(batch, torch.Tensor):
            expected = (3, self.image_size, self.image_size)
            if batch.dim() != 4 or tuple(batch.shape[1:]) != expected:
                raise DataFormatError(
                    f"{self.model}: a pixel tensor must be (B, {', '.join(map(str, expected))}) as preprocess_image "
                    f"returns, got {tuple(batch.shape)}"
                )
            if not batch.is_floating_point():
                raise DataFormatError(f"{self.model}: a pixel tensor must be float (normalised), got {batch.dtype}")
            return batch.to(torch.float32)
        if len(batch) == 0:
            return torch.empty(0, 3, self.image_size, self.image_size)
        return torch.stack([self(image) for image in batch])
