"""Images as LAVIS `blip_image_eval` prepares them: Resize((s, s), BICUBIC), ToTensor, Normalize(CLIP).

The steps are fico_registry.plugin_api.image_preprocess's (shared with the other square-resize models).
"""

from __future__ import annotations

from collections.abc import Sequence

from fico_registry.plugin_api.image_preprocess import ImagePreprocessor as _SquareResize
from fico_registry.plugin_api.image_preprocess import encode_pixels

__all__ = ["ImagePreprocessor", "encode_pixels"]


class ImagePreprocessor(_SquareResize):
    """blip2's images: an empty batch gives an empty (0, 3, s, s) tensor."""

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(image_size, mean, std, model="blip2")
