"""open_clip models as fico encoders: open_clip's own model, eval transform and tokenizer.

Imported only by load_model(). Embeddings are exactly `model.encode_image(x)` /
`model.encode_text(tokens)` L2-normalised (in float32), compared by cosine.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

from fico_registry import ModelSpec
from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.compat import ensure_torchvision

ensure_torchvision()  # before open_clip imports torchvision / timm

import open_clip  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict  # noqa: E402

from .weights import HF_HUB, Weights, resolve  # noqa: E402

PRECISIONS = ("fp32", "fp16", "bf16")
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


class OpenClipEncoder:
    """encode_images(list of PIL | (B,3,H,W) tensor) / encode_texts(list of str) -> (B, dim), unit norm."""

    def __init__(self, model: Any, tokenizer: Any, *, dim: int, device: str, input_dtype: torch.dtype | None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.dim = dim
        self.device = device
        self.input_dtype = input_dtype or torch.float32
        self.transform = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)

    def preprocess_image(self, image: Any) -> torch.Tensor:
        """open_clip's eval transform for this model (resize, crop / squash, normalise): (3, H, W)."""
        return self.transform(image)

    @torch.no_grad()
    def encode_images(self, batch: Any) -> torch.Tensor:
        pixels = batch if isinstance(batch, torch.Tensor) else torch.stack([self.transform(img) for img in batch])
        features = self.model.encode_image(pixels.to(self.device, dtype=self.input_dtype))
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, batch: Any) -> torch.Tensor:
        tokens = self.tokenizer(list(batch)).to(self.device)
        features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1)


def build(*, spec: ModelSpec, config: dict[str, Any], checkpoint: str | Path | None = None, device: str = "cpu"):
    config = copy.deepcopy(dict(config))  # card configs are shared: never mutate them
    arch = config.get("arch") or spec.extra.get("arch")
    if not arch:
        raise ConfigError(f"{spec.name}: config needs 'arch', an open_clip architecture name")
    precision = config.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(f"{spec.name}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    weights = resolve(spec, arch, checkpoint)
    model_cfg = config.get("model_cfg")
    if model_cfg is not None:
        if weights.carries_config:
            raise ConfigError(
                f"{spec.name}: config 'model_cfg' cannot be combined with {weights.model_name}, which has its own"
            )
        model = _build_custom(spec, model_cfg, weights, config, precision, device)
        tokenizer = _custom_tokenizer(model_cfg["text_cfg"])
        dim = int(model_cfg["embed_dim"])
    elif weights.carries_config:  # the repo / folder says which tokenizer: read it after the config
        model = _create(spec, weights, config, precision, device)
        tokenizer = _tokenizer(spec, weights.model_name)
        dim = _embed_dim(spec, weights.model_name)
    else:  # a hub-only tokenizer (SigLIP, XLM-R ...) fails before a full-size model is allocated
        tokenizer = _tokenizer(spec, weights.model_name)
        model = _create(spec, weights, config, precision, device)
        dim = _embed_dim(spec, weights.model_name)
    return OpenClipEncoder(model, tokenizer, dim=dim, device=device, input_dtype=open_clip.get_input_dtype(precision))


def _preprocess_overrides(weights: Weights, config: dict[str, Any]) -> dict[str, Any]:
    """The tag's preprocessing (SigLIP squash, MobileCLIP mean 0 ...), then the config's own."""
    overrides = {k: weights.pretrained_cfg[k] for k in _PREPROCESS_KEYS if k in weights.pretrained_cfg}
    overrides.update(config.get("preprocess", {}))
    return overrides


def _quick_gelu(weights: Weights, config: dict[str, Any]) -> dict[str, bool]:
    """Build with the activation the weights were trained with (OpenAI / some LAION tags: QuickGELU).

    open_clip only warns when an architecture and a tag disagree; the numbers then differ from
    the original model, so the tag's setting wins here (and the config's 'quick_gelu' over both).
    """
    if "quick_gelu" in config:
        return {"quick_gelu": bool(config["quick_gelu"])}
    if weights.tag is not None:
        return {"quick_gelu": bool(weights.pretrained_cfg.get("quick_gelu", False))}
    return {}


def _create(spec: ModelSpec, weights: Weights, config: dict[str, Any], precision: str, device: str) -> Any:
    overrides = _preprocess_overrides(weights, config)
    try:
        return open_clip.create_model(
            weights.model_name,
            pretrained=None if weights.file is None else str(weights.file),
            precision=precision,
            device=device,
            pretrained_image=False,  # never fetch tower weights behind the user's back
            pretrained_text=False,
            force_preprocess_cfg=overrides or None,
            **_quick_gelu(weights, config),
        )
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(_build_error(spec, weights, exc)) from None


def _build_custom(
    spec: ModelSpec, model_cfg: dict[str, Any], weights: Weights, config: dict[str, Any], precision: str, device: str
) -> Any:
    """A model from a config dict (the 'tiny' test config), without registering it in open_clip."""
    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg["text_cfg"]
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    cfg.update(_quick_gelu(weights, config))
    model = model_class(**cfg, cast_dtype=open_clip.get_cast_dtype(precision))
    model.to(device)
    if precision != "fp32":
        open_clip.convert_weights_to_lp(model, dtype=open_clip.get_input_dtype(precision))
    if weights.file is not None:
        try:
            open_clip.load_checkpoint(model, str(weights.file), strict=True)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            raise CheckpointError(_build_error(spec, weights, exc)) from None
    preprocess = merge_preprocess_dict(
        PreprocessCfg(size=model.visual.image_size), _preprocess_overrides(weights, config)
    )
    open_clip.set_model_preprocess_cfg(model, preprocess)
    return model


def _build_error(spec: ModelSpec, weights: Weights, exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    if weights.model_name.startswith(HF_HUB) and ("download" in detail or "cache" in detail):
        repo = weights.model_name[len(HF_HUB) :]
        return (
            f"{spec.name}: open_clip repo {repo} is not in the local Hugging Face cache and could not be downloaded "
            f"(offline?): download open_clip_config.json and the weights from https://huggingface.co/{repo} "
            "into a folder and pass checkpoint=FOLDER"
        )
    if len(detail) > 600:
        detail = detail[:600] + " ..."
    source = weights.model_name + ("" if weights.file is None else f" with weights {weights.file}")
    hint = ""
    text_tower = str(spec.extra.get("text", ""))
    if text_tower.startswith("hf:") and not weights.carries_config:
        hint = f" (its text tower is built from the Hugging Face files of {text_tower[3:]!r}, which must be cached)"
    return f"{spec.name}: open_clip could not build {source}{hint}: {type(exc).__name__}: {detail}"


@cache
def _clip_tokenizer(context_length: int) -> Any:
    # reading the 49k-merge BPE table takes a moment: share one tokenizer per length
    return open_clip.SimpleTokenizer(context_length=context_length)


def _custom_tokenizer(text_cfg: dict[str, Any]) -> Any:
    context_length = int(text_cfg.get("context_length", 77))
    if text_cfg.get("hf_tokenizer_name"):
        from open_clip.tokenizer import HFTokenizer

        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=context_length)
    return _clip_tokenizer(context_length)


def _tokenizer(spec: ModelSpec, model_name: str) -> Any:
    try:
        return open_clip.get_tokenizer(model_name)
    except Exception as exc:  # HF tokenizers raise OSError / ValueError / hub errors
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(
            f"{spec.name}: the tokenizer of {model_name} ({spec.extra.get('tokenizer', '?')}) needs files that are "
            f"not on this machine ({detail}); pass an open_clip folder with its tokenizer files as checkpoint=PATH"
        ) from None


def _embed_dim(spec: ModelSpec, model_name: str) -> int:
    cfg = open_clip.get_model_config(model_name)
    if cfg is None or "embed_dim" not in cfg:
        raise ConfigError(f"{spec.name}: open_clip has no model config for {model_name}")
    return int(cfg["embed_dim"])
