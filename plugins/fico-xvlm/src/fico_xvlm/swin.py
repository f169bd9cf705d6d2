"""X-VLM's image encoder: timm's SwinTransformer, addressed by X-VLM's parameter names.

timm's Swin has the same modules and parameter names as the Swin code X-VLM ships
(models/swin_transformer.py) with one difference: a stage's patch merging sits at the END of
the stage in X-VLM (`layers.{i}.downsample`, i < last) and at the START of the next one in
timm (`layers.{i+1}.downsample`). `original_name` / `our_name` translate. X-VLM also saves
two derived buffers per block (`attn.relative_position_index`, and `attn_mask` in shifted
blocks); timm keeps them non-persistent, so weights.py checks them instead of loading them.

The output is X-VLM's: the final LayerNorm's tokens with their average prepended as a CLS
token, (B, 1 + h*w, width).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fico_registry.plugin_api.compat import ensure_torchvision

_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.")


def build_swin(config: Mapping[str, Any]) -> nn.Module:
    """timm SwinTransformer with X-VLM's build_vision_encoder settings, without a classifier."""
    ensure_torchvision()  # timm imports torchvision
    from timm.models.swin_transformer import SwinTransformer

    return SwinTransformer(
        img_size=config["image_res"],
        patch_size=config["swin_patch_size"],
        in_chans=3,
        num_classes=0,
        global_pool="",
        embed_dim=config["swin_embed_dim"],
        depths=tuple(config["swin_depths"]),
        num_heads=tuple(config["swin_num_heads"]),
        window_size=config["window_size"],
        mlp_ratio=config["mlp_ratio"],
        qkv_bias=True,
        drop_rate=0.0,
        proj_drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,  # eval only (X-VLM trains with 0.1)
        norm_layer=nn.LayerNorm,
    )


def swin_tokens(swin: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, s, s) -> (B, 1 + h*w, width): average-pooled CLS, then the normalised tokens."""
    features = swin.forward_features(pixels)  # (B, h, w, width), after the final LayerNorm
    tokens = features.flatten(1, 2)
    return torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)


def original_name(ours: str) -> str:
    """A key of our vision_encoder (timm) -> X-VLM's name (relative to `vision_encoder.`)."""
    match = _DOWNSAMPLE.match(ours)
    if match:
        return f"layers.{int(match.group(1)) - 1}.downsample." + ours[match.end() :]
    return ours


def our_name(original: str) -> str:
    """X-VLM's vision_encoder key (without the prefix) -> ours (timm)."""
    match = _DOWNSAMPLE.match(original)
    if match:
        return f"layers.{int(match.group(1)) + 1}.downsample." + original[match.end() :]
    return original


def derived_buffers(swin: nn.Module) -> dict[str, torch.Tensor]:
    """The buffers X-VLM saves and timm derives, by X-VLM's names (relative to `vision_encoder.`).

    X-VLM registers attn_mask only where the block shifts (a None buffer is not saved), and a
    relative_position_index in every block.
    """
    out: dict[str, torch.Tensor] = {}
    for stage_index, stage in enumerate(swin.layers):
        for block_index, block in enumerate(stage.blocks):
            prefix = f"layers.{stage_index}.blocks.{block_index}."
            out[prefix + "attn.relative_position_index"] = block.attn.relative_position_index
            if block.attn_mask is not None:
                out[prefix + "attn_mask"] = block.attn_mask
    return out


def materialise_buffers(swin: nn.Module, device: torch.device | str = "cpu") -> None:
    """Recompute timm's non-persistent buffers after a meta-device build and assign-load."""
    for module in swin.modules():
        index = getattr(module, "relative_position_index", None)
        if isinstance(index, torch.Tensor) and index.is_meta:
            module.relative_position_index = torch.empty(index.shape, dtype=index.dtype, device=device)
        if callable(getattr(module, "init_non_persistent_buffers", None)):
            module.init_non_persistent_buffers()
