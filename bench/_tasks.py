"""Synthetic evaluation tasks shared by the benchmarks (imported as `_tasks`: bench/ is the script's folder)."""

from __future__ import annotations

import numpy as np


def make_task(n_images: int, cpi: int, dim: int, n_classes: int = 80, seed: int = 0):
    """Embeddings with a signal (each caption = 0.5 x its image + noise), `cpi` captions per image and
    COCO-like multi-hot labels (~3 per image, some classes far more frequent than others, none empty).

    Returns (images (n, dim) float32, texts (n * cpi, dim) float32, caption_to_image, labels (n, n_classes)).
    """
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((n_images, dim)).astype(np.float32)
    c2i = np.repeat(np.arange(n_images), cpi)
    txt = (0.5 * img[c2i] + rng.standard_normal((len(c2i), dim))).astype(np.float32)
    freq = rng.dirichlet(np.full(n_classes, 0.5)) * 3.0
    labels = (rng.random((n_images, n_classes)) < np.clip(freq, 0.002, 0.6)).astype(np.float32)
    labels[labels.sum(1) == 0, rng.integers(0, n_classes)] = 1
    return img, txt, c2i, labels
