"""Read X-VLM checkpoints strictly, by the original parameter names.

Accepted files (read with torch's weights-only loader, nothing else is unpickled):
  - `{"model": state_dict, "config": dict}` as Retrieval.py saves fine-tuned models
    (`checkpoint_best.pth`, `checkpoint_{epoch}.pth`);
  - a raw state dict (the original loader accepts both: `checkpoint['model'] if 'model' in keys`);
  - pre-training checkpoints (`*_model_state_step_*.th`), whose text encoder is a
    BertForMaskedLM: `text_encoder.bert.*` is read as `text_encoder.*`, as X-VLM's
    load_pretrained does.

Every key must be known. Unused pre-training heads are recognised by name and dropped
(IGNORED_HEADS); buffers the original saves but that follow from the architecture
(DERIVED_BUFFERS) are compared with ours, not loaded, so a checkpoint made for another
window or image size fails with a message saying so; anything else missing, unexpected or of
the wrong shape is a CheckpointError naming the original key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint, state_dict_mismatches, strict_load_state_dict

from .architecture import XVLMRetrieval
from .swin import derived_buffers, materialise_buffers, original_name, our_name

VISION, TEXT = "vision_encoder.", "text_encoder."
# Heads of the pre-training model (and the grounding fine-tunes) that retrieval never runs.
IGNORED_HEADS = {
    r"text_encoder\.cls\..+": "masked-language-model head of pre-training (BertForMaskedLM.cls)",
    r"bbox_head\..+": "box regression head of pre-training / grounding",
}
DERIVED_BUFFERS = re.compile(
    r"^(vision_encoder\.layers\.\d+\.blocks\.\d+\.(attn\.relative_position_index|attn_mask)"
    r"|text_encoder\.embeddings\.position_ids)$"
)
_IGNORED = re.compile("^(" + "|".join(IGNORED_HEADS) + ")$")
_PRETRAIN_BERT = "text_encoder.bert."


def to_original_name(ours: str) -> str:
    return VISION + original_name(ours[len(VISION) :]) if ours.startswith(VISION) else ours


def to_our_name(original: str) -> str:
    return VISION + our_name(original[len(VISION) :]) if original.startswith(VISION) else original


def original_derived_buffers(model: XVLMRetrieval) -> dict[str, torch.Tensor]:
    out = {VISION + k: v for k, v in derived_buffers(model.vision_encoder).items()}
    out[TEXT + "embeddings.position_ids"] = model.text_encoder.embeddings.position_ids
    return out


def original_state_dict(model: XVLMRetrieval) -> dict[str, torch.Tensor]:
    """The model's weights in X-VLM's layout (names and derived buffers), as Retrieval.py saves them."""
    state = {to_original_name(k): v for k, v in model.state_dict().items()}
    state.update(original_derived_buffers(model))
    return state


def read_checkpoint(path: Path) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
    """-> (state dict by original names, the saved training config or None)."""
    obj = load_torch_checkpoint(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        state, saved = obj["model"], obj.get("config")
    elif isinstance(obj, Mapping) and any(str(k).startswith((VISION, TEXT)) for k in obj):
        state, saved = obj, None
    else:
        found = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not an X-VLM checkpoint: expected {{'model': state_dict, 'config': ...}} or a state dict "
            f"with vision_encoder.* / text_encoder.* keys, found {found}"
        )
    renamed: dict[str, Any] = {}
    for key, value in state.items():
        name = TEXT + key[len(_PRETRAIN_BERT) :] if key.startswith(_PRETRAIN_BERT) else key
        if name in renamed:
            raise CheckpointError(f"{path} holds both {name} and {_PRETRAIN_BERT}{name[len(TEXT) :]}")
        renamed[name] = value
    return renamed, saved if isinstance(saved, Mapping) else None


def check_saved_config(saved: Mapping[str, Any] | None, config: Mapping[str, Any], where: str) -> None:
    """The training config saved with a fine-tuned model must describe this architecture."""
    if saved is None:
        return
    if saved.get("use_clip_vit") or saved.get("use_swin") is False:
        raise CheckpointError(f"{where} is an X-VLM with a ViT image encoder (use_swin false); only Swin is supported")
    if saved.get("use_roberta"):
        raise CheckpointError(f"{where} is an X-VLM with a RoBERTa text encoder; only BERT is supported")
    for key in ("image_res", "embed_dim"):
        if key in saved and saved[key] != config[key]:
            raise CheckpointError(
                f"{where} was trained with {key}={saved[key]!r} but the config has {config[key]!r}: "
                f"pass config={{'{key}': {saved[key]!r}}} (or a matching named config)"
            )


def load_checkpoint(
    config: Mapping[str, Any], path: Path, *, loaded: tuple[dict[str, Any], Mapping[str, Any] | None] | None = None
) -> XVLMRetrieval:
    """A float32 model (eval mode) holding the checkpoint's weights; strict, by original names.

    `loaded`: what read_checkpoint(path) returned, when the caller has read it already.
    """
    state, saved = loaded if loaded is not None else read_checkpoint(path)
    check_saved_config(saved, config, str(path))
    with torch.device("meta"):  # no random init, no second copy of the weights
        model = XVLMRetrieval(config)
    own_derived = original_derived_buffers(model)
    expected = {to_original_name(k): v for k, v in model.state_dict().items()}

    derived = {k: v for k, v in state.items() if DERIVED_BUFFERS.match(k)}
    weights = {k: v for k, v in state.items() if not DERIVED_BUFFERS.match(k) and not _IGNORED.match(k)}
    _check_keys(weights, expected, derived, own_derived, where=str(path))

    strict_load_state_dict(
        model, {to_our_name(k): v for k, v in weights.items()}, what=f"{path} (X-VLM names)", assign=True
    )
    materialise_buffers(model.vision_encoder)
    embeddings = model.text_encoder.embeddings
    embeddings.position_ids = torch.arange(embeddings.position_embeddings.num_embeddings).expand((1, -1))
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a timm change we do not know how to re-derive
        raise CheckpointError(f"internal: buffers not materialised after loading {path}: {', '.join(leftover[:5])}")
    _check_derived(derived, original_derived_buffers(model), where=str(path))
    return model.float().eval()


def _check_keys(
    weights: Mapping[str, Any],
    expected: Mapping[str, torch.Tensor],
    derived: Mapping[str, Any],
    own_derived: Mapping[str, torch.Tensor],
    *,
    where: str,
) -> None:
    # derived buffers (attention masks, relative position indices) may be absent: they are re-derived
    parts = state_dict_mismatches({**expected, **own_derived}, {**weights, **derived}, optional=own_derived.keys())
    if not parts:
        return
    hint = ""
    text = " ".join(parts)
    if "relative_position" in text or "attn_mask" in text:
        hint = (
            " — the Swin window / image size differ: fine-tuned retrieval checkpoints are 384 px, window 12 "
            "(config 'default', 'flickr30k' or 'coco'); pre-trained ones 224 px, window 7 (config 'pretrain-224')"
        )
    elif any(k.startswith(VISION) and ("pos_embed" in k or ".embeddings." in k) for k in weights):
        hint = " — this looks like an X-VLM with a ViT / CLIP-ViT image encoder; only the Swin variant is supported"
    raise CheckpointError(f"{where} does not match the X-VLM architecture of this config: {text}{hint}")


def _check_derived(derived: Mapping[str, Any], own: Mapping[str, torch.Tensor], *, where: str) -> None:
    for key, value in derived.items():
        if not torch.equal(value.to(own[key].dtype), own[key]):
            raise CheckpointError(
                f"{where}: {key} differs from the buffer this config derives (another window or image size?)"
            )
