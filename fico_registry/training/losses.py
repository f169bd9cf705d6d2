"""Losses that several training recipes share (imported only while training: torch at the top)."""

from __future__ import annotations

import torch

from fico_registry.errors import ShapeError


def vse_hinge_loss(scores: torch.Tensor, margin: float, max_violation: bool) -> torch.Tensor:
    """VSE++'s ContrastiveLoss on a square score matrix: scores[i, j] = image i with caption j, pairs on the diagonal.

    Every image is ranked against the other captions of the batch and every caption against the
    other images, with a hinge at `margin`: summed over the negatives, or only the hardest one
    (`max_violation`, VSE++), then summed over the batch. Only the diagonal is masked, as in the
    originals (SCAN, VSRN, ADV): two captions of one image count as each other's negatives.
    """
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ShapeError(f"vse_hinge_loss needs a square (batch, batch) score matrix, got {tuple(scores.shape)}")
    diagonal = scores.diag().view(-1, 1)
    cost_caption = (margin + scores - diagonal).clamp(min=0)  # image i against the other captions j
    cost_image = (margin + scores - diagonal.T).clamp(min=0)  # caption j against the other images i
    eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    cost_caption = cost_caption.masked_fill(eye, 0)
    cost_image = cost_image.masked_fill(eye, 0)
    if max_violation:
        return cost_caption.max(dim=1).values.sum() + cost_image.max(dim=0).values.sum()
    return cost_caption.sum() + cost_image.sum()
