"""Images as unilm beit3 evaluates them: RGB, Resize((s, s), bicubic), ToTensor, Normalize(0.5, 0.5).

The steps are fico_registry.plugin_api.image_preprocess's (shared with the other square-resize models).
"""

from __future__ import annotations

from collections.abc import Sequence

from fico_registry.plugin_api.image_preprocess import ImagePreprocessor as _SquareResize


class ImagePreprocessor(_SquareResize):
    """beit3's images: an empty batch gives an empty (0, 3, s, s) tensor."""

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], *, model: str = "beit3") -> None:
        super().__init__(image_size, mean, std, model=model)
