"""Train the reference dual encoder: symmetric InfoNCE on both heads, a fixed, seeded schedule."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fico_registry.data.corpus import Corpus
from fico_registry.models.reference import ReferenceDualEncoder, preprocess, tokenize

HASH_SCALE = 8.0  # logits scale for the tanh codes' contrastive loss
QUANTISATION_WEIGHT = 0.1  # pulls tanh outputs towards +-1 so sign() loses little


@dataclass
class TrainLog:
    epochs: int
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "final_loss": self.losses[-1] if self.losses else None,
        }


def _contrastive(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    logits = scale * a @ b.T
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def train_reference(
    train: Corpus,
    config: dict[str, Any],
    *,
    epochs: int = 12,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    device: str = "cpu",
    progress: bool | None = None,
) -> tuple[ReferenceDualEncoder, TrainLog]:
    """Train on (image, one of its captions) pairs, a fresh random caption per image each epoch."""
    from fico_registry.runtime.progress import progress_bar

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sizes = {k: int(config[k]) for k in ("image_size", "width", "embed_dim", "bits", "vocab_size", "max_len")}
    network = ReferenceDualEncoder(**sizes).to(device)
    size = network.config["image_size"]
    pixels = torch.stack([preprocess(train.load_image(i), size) for i in range(train.n_images)])
    captions_of: list[list[int]] = [[] for _ in range(train.n_images)]
    for j, i in enumerate(train.caption_to_image):
        captions_of[int(i)].append(j)
    steps_per_epoch = (train.n_images + batch_size - 1) // batch_size
    optimiser = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    log = TrainLog(epochs, 0, 0.0)
    started = time.perf_counter()
    network.train()
    with progress_bar(progress, "training reference model", epochs * steps_per_epoch) as advance:
        for _ in range(epochs):
            order = rng.permutation(train.n_images)
            picks = [captions_of[i][rng.integers(len(captions_of[i]))] for i in order]
            for s in range(0, len(order), batch_size):
                images = pixels[order[s : s + batch_size]].to(device)
                ids, pad = tokenize(
                    [train.captions[j] for j in picks[s : s + batch_size]],
                    network.config["vocab_size"],
                    network.config["max_len"],
                )
                img_c, img_h = network.image_features(images)
                txt_c, txt_h = network.text_features(ids.to(device), pad.to(device))
                loss = _contrastive(img_c, txt_c, network.logit_scale.exp().clamp(max=100))
                loss = loss + _contrastive(F.normalize(img_h, dim=-1), F.normalize(txt_h, dim=-1), HASH_SCALE)
                loss = loss + QUANTISATION_WEIGHT * ((img_h.abs() - 1) ** 2 + (txt_h.abs() - 1) ** 2).mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                log.steps += 1
                log.losses.append(float(loss.detach()))
                advance(1)
    network.eval()
    log.seconds = time.perf_counter() - started
    return network, log
