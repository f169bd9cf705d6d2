"""ADV's relaxed hash head and the sign that turns it into codes.

softmax over the code dimensions -> subtract (median + 1e-8) per item -> tanh(scale * x).
torch.median returns the LOWER of the two middle values for an even width, so of `bits`
distinct values exactly bits/2 lie above median + 1e-8: codes are balanced by construction.
"""

from __future__ import annotations

import torch

MEDIAN_OFFSET = 1e-8
IMAGE_SCALE = 100.0  # image_net.TransformerBinaryMapping: tanh(hash * 100)
TEXT_SCALE = 10.0  # text_net.BertBinaryMapping and the screen ResNet: tanh(hash * 10)


def median_centred_tanh(values: torch.Tensor, scale: float) -> torch.Tensor:
    """(n, bits) -> tanh(scale * (values - (lower median + 1e-8))), computed in float32."""
    values = values.float()
    median = values.median(dim=-1, keepdim=True).values
    return torch.tanh((values - (median + MEDIAN_OFFSET)) * scale)


def to_codes(activations: torch.Tensor) -> torch.Tensor:
    """{-1,+1} int8 codes. An exact 0 (the original's torch.sign would keep 0) becomes -1.

    Exact zeros only arise when a value equals fl(median + 1e-8), or in half precision, where
    1e-8 underflows and the median itself lands on 0: -1 is what fp32 gives the median.
    """
    return torch.where(activations > 0, 1, -1).to(torch.int8)
