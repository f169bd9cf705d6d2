"""transformers dual encoders as fico encoders. Imported only by load_model().

Embeddings are the model's own `get_image_features(...).pooler_output` and
`get_text_features(...).pooler_output`, L2-normalised in float32, compared by cosine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fico_registry import ModelSpec
from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.compat import ensure_torchvision

ensure_torchvision()  # transformers' image processors import torchvision

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402

from .families import FAMILIES, HFFamily  # noqa: E402
from .messages import not_loadable  # noqa: E402
from .processors import load_processors, tiny_processors  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BACKENDS = ("pil", "torchvision")


class HFDualEncoder:
    """encode_images(list of PIL | (B,3,H,W) tensor) / encode_texts(list of str) -> (B, dim), unit norm."""

    def __init__(
        self, model: Any, image_processor: Any, tokenizer: Any, *, max_length: int, device: str, dtype: torch.dtype
    ) -> None:
        self.model = model
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = device
        self.dtype = dtype
        self.dim = int(model.config.projection_dim)

    def preprocess_image(self, image: Any) -> torch.Tensor:
        """The checkpoint's own image processor (resize, crop, rescale, normalise): (3, H, W)."""
        return self.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]

    @torch.no_grad()
    def encode_images(self, batch: Any) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            pixels = batch
        else:
            pixels = self.image_processor(images=list(batch), return_tensors="pt")["pixel_values"]
        out = self.model.get_image_features(pixel_values=pixels.to(self.device, dtype=self.dtype))
        return F.normalize(out.pooler_output.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, batch: Any) -> torch.Tensor:
        # A fixed length makes every caption's tokens independent of its batch neighbours.
        enc = self.tokenizer(
            list(batch), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        out = self.model.get_text_features(
            input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
        )
        return F.normalize(out.pooler_output.float(), dim=-1)


def build(*, spec: ModelSpec, config: dict[str, Any], checkpoint: str | Path | None = None, device: str = "cpu"):
    family = FAMILIES[spec.extra["hf_family"]]
    precision = config.get("precision", "fp32")
    if precision not in DTYPES:
        raise ConfigError(f"{spec.name}: precision must be one of {', '.join(DTYPES)}, got {precision!r}")
    backend = config.get("image_backend", "pil")
    if backend not in BACKENDS:
        raise ConfigError(f"{spec.name}: image_backend must be 'pil' or 'torchvision', got {backend!r}")
    max_length = int(config.get("max_length", 77))

    if checkpoint is None:  # random weights; processors from the config (fail before allocating)
        source = config.get("processor", "tiny")
        if source == "tiny":
            image_processor, tokenizer = tiny_processors(family, config["architecture"], backend)
        else:
            image_processor, tokenizer = load_processors(spec, family, str(source), backend)
        model = _random_model(spec, family, config.get("architecture", {}))
    else:
        image_processor, tokenizer = load_processors(spec, family, str(checkpoint), backend)
        model = _pretrained_model(spec, family, str(checkpoint), strict=bool(config.get("strict", True)))
    model.to(device=device, dtype=DTYPES[precision]).eval()
    return HFDualEncoder(
        model, image_processor, tokenizer, max_length=max_length, device=device, dtype=DTYPES[precision]
    )


def _random_model(spec: ModelSpec, family: HFFamily, architecture: dict[str, Any]) -> Any:
    try:
        config = getattr(transformers, family.config_class)(**architecture)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{spec.name}: bad 'architecture' for {family.config_class}: {exc}") from None
    return getattr(transformers, family.model_class)(config)


def _pretrained_model(spec: ModelSpec, family: HFFamily, source: str, *, strict: bool) -> Any:
    model_class = getattr(transformers, family.model_class)
    try:
        model, info = model_class.from_pretrained(source, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(not_loadable(spec, family, source, exc, "model")) from None
    problems = {
        "missing": sorted(info.get("missing_keys", [])),
        "unexpected": sorted(k for k in info.get("unexpected_keys", []) if not k.endswith("position_ids")),
        "mismatched": sorted(str(k) for k in info.get("mismatched_keys", [])),
    }
    found = {kind: keys for kind, keys in problems.items() if keys}
    if found and strict:
        detail = "; ".join(
            f"{kind} keys: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}" for kind, keys in found.items()
        )
        raise CheckpointError(
            f"{spec.name}: {source} does not match {family.model_class} ({detail}); "
            "set config 'strict': false to load it anyway"
        )
    return model
