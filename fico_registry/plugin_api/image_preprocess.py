"""Square-resize image preprocessing (BLIP-2, BEiT-3, X-VLM): RGB, Resize((s, s), bicubic), ToTensor, Normalize.

torchvision's Resize on a PIL image calls PIL's resize with the same filter, and ToTensor is
uint8 / 255, so PIL and torch alone give the same numbers (each plugin's tests compare with
torchvision's transforms). torch and PIL are imported when an image is prepared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fico_registry.errors import DataFormatError


class ImagePreprocessor:
    """One PIL image -> normalised float32 (3, image_size, image_size); `batch` stacks a batch of them.

    `model` names the model in error messages. An empty batch gives an empty (0, 3, s, s) tensor,
    like an empty stacked tensor does: the encoder decides what an empty batch encodes to.
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], *, model: str) -> None:
        import torch

        self.image_size = int(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.model = model

    def __call__(self, image: Any) -> Any:  # -> torch.Tensor
        """One PIL image -> float32 (3, image_size, image_size)."""
        import torch
        from PIL import Image

        if not isinstance(image, Image.Image):
            raise DataFormatError(f"{self.model} expects PIL images (or a stacked tensor), got {type(image).__name__}")
        size = (self.image_size, self.image_size)
        resized = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.array(resized, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        return (pixels.to(torch.float32).div(255) - self.mean) / self.std

    def batch(self, batch: Any) -> Any:  # -> torch.Tensor
        """A list of PIL images, or a (B, 3, s, s) float tensor of __call__ outputs -> (B, 3, s, s) float32."""
        import torch

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


def encode_pixels(encode: Callable[[Any], Any], pixels: Any) -> Any:
    """`encode(pixels)`, also for an empty batch, whose outputs then have 0 rows and the usual trailing shapes.

    Vision transformers reshape by the batch size and cannot run on 0 images; an empty batch runs
    one zero image instead and keeps none of its rows (a tensor, or a dict of tensors).
    """
    if pixels.shape[0] > 0:
        return encode(pixels)
    out = encode(pixels.new_zeros((1, *pixels.shape[1:])))
    return {key: value[:0] for key, value in out.items()} if isinstance(out, dict) else out[:0]
