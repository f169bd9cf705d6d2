"""The model: imported only by load_model(). Replace the random projections with your network."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _Projections:
    """Deterministic random weights; a real model builds its network and loads the checkpoint."""

    def __init__(self, width: int, image_size: int, device: str) -> None:
        self.width, self.image_size, self.device = width, image_size, device
        generator = torch.Generator().manual_seed(0)
        self.image_proj = torch.randn(3 * 8 * 8, width, generator=generator).to(device)
        self.text_proj = torch.randn(256, width, generator=generator).to(device)

    def preprocess_image(self, image) -> torch.Tensor:
        """PIL image -> (3, H, W) float tensor. Evaluation may call it in threads and stack the results."""
        image = image.convert("RGB").resize((self.image_size, self.image_size))
        data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return data.view(self.image_size, self.image_size, 3).permute(2, 0, 1).float() / 255

    def pixels(self, batch) -> torch.Tensor:
        """A list of PIL images, or the stacked (B, 3, H, W) tensor of preprocess_image outputs."""
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device)
        return torch.stack([self.preprocess_image(image) for image in batch]).to(self.device)

    def patches(self, batch) -> torch.Tensor:
        """(B, 4, width): one feature per image quadrant."""
        pixels = F.adaptive_avg_pool2d(self.pixels(batch), 16)
        quads = pixels.unfold(2, 8, 8).unfold(3, 8, 8)  # (B, 3, 2, 2, 8, 8)
        return quads.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2) @ self.image_proj

    def words(self, texts: list[str], max_words: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, max_words, width) byte-count features per word, and the (B, max_words) mask of real words."""
        counts = torch.zeros(len(texts), max_words, 256)
        mask = torch.zeros(len(texts), max_words)
        for row, text in enumerate(texts):
            for col, word in enumerate(text.lower().split()[:max_words]):
                mask[row, col] = 1
                for byte in word.encode():
                    counts[row, col, byte] += 1
        return (counts @ self.text_proj).to(self.device), mask.to(self.device)

class Encoder(_Projections):
    """Continuous dual encoder: (B, dim) embeddings compared by cosine."""

    @property
    def dim(self) -> int:  # the width of this config (the card's dim is the default config's)
        return self.width

    @torch.no_grad()
    def encode_images(self, batch) -> torch.Tensor:
        return F.normalize(self.patches(batch).mean(1), dim=-1)

    @torch.no_grad()
    def encode_texts(self, batch: list[str]) -> torch.Tensor:
        words, mask = self.words(batch)
        return F.normalize((words * mask[..., None]).sum(1), dim=-1)


def build(*, spec, config, checkpoint=None, device="cpu"):
    """The factory the card names: called as build(spec=, config=, checkpoint=, device=)."""
    if checkpoint is not None:
        raise ValueError(f"{spec.name} has no checkpoints yet")
    return Encoder(config["width"], config["image_size"], device)
