"""Images as X-VLM's test_transform prepares them: Resize((s, s), BICUBIC), ToTensor, Normalize(CLIP).

torchvision's Resize on a PIL image is PIL's resize and ToTensor is uint8 / 255, so this is
written with PIL and torch alone (same operations, same numbers; a test compares with torchvision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fico_registry.errors import DataFormatError


class ImagePreprocessor:
    def __init__(self, image_res: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.image_res = int(image_res)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Any) -> torch.Tensor:
        """One PIL image -> float32 (3, image_res, image_res)."""
        from PIL import Image

        if not isinstance(image, Image.Image):
            raise DataFormatError(f"xvlm expects PIL images (or a stacked tensor), got {type(image).__name__}")
        resized = image.convert("RGB").resize((self.image_res, self.image_res), Image.BICUBIC)
        pixels = torch.from_numpy(np.array(resized, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        return (pixels.to(torch.float32).div(255) - self.mean) / self.std

    def batch(self, batch: Any) -> torch.Tensor:
        """A list of PIL images, or a (B, 3, s, s) tensor of __call__ outputs -> (B, 3, s, s)."""
        if isinstance(batch, torch.Tensor):
            expected = (3, self.image_res, self.image_res)
            if batch.dim() != 4 or tuple(batch.shape[1:]) != expected:
                raise DataFormatError(
                    f"xvlm: a pixel tensor must be (B, {', '.join(map(str, expected))}) from preprocess_image, "
                    f"got {tuple(batch.shape)}"
                )
            return batch.to(torch.float32)
        if len(batch) == 0:
            raise DataFormatError("xvlm: empty image batch")
        return torch.stack([self(image) for image in batch])
