"""The model itself: imported only by load_model()."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ExampleEncoder:
    """Encoder protocol: encode_images(list of PIL images), encode_texts(list of str) -> (n, dim)."""

    def __init__(self, dim: int, image_size: int, device: str) -> None:
        self.dim, self.image_size, self.device = dim, image_size, device
        generator = torch.Generator().manual_seed(0)
        self.image_proj = torch.randn(3 * image_size * image_size, dim, generator=generator).to(device)
        self.text_proj = torch.randn(256, dim, generator=generator).to(device)

    @torch.no_grad()
    def encode_images(self, batch):
        pixels = torch.stack([self.preprocess_image(img) for img in batch]) if isinstance(batch, list) else batch
        return F.normalize(pixels.to(self.device).flatten(1) @ self.image_proj, dim=-1)

    def preprocess_image(self, image) -> torch.Tensor:
        image = image.convert("RGB").resize((self.image_size, self.image_size))
        return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(self.image_size, self.image_size, 3).permute(2, 0, 1).float() / 255

    @torch.no_grad()
    def encode_texts(self, batch):
        counts = torch.zeros(len(batch), 256)
        for row, text in enumerate(batch):
            for byte in text.lower().encode():
                counts[row, byte] += 1
        return F.normalize(counts.to(self.device) @ self.text_proj, dim=-1)


def build(*, spec, config, checkpoint=None, device="cpu"):
    if checkpoint is not None:
        raise ValueError("example-dual has no checkpoints")
    return ExampleEncoder(config["dim"], config["image_size"], device)
