"""ADV's screen model (`screen_model.BinaryBaseModel`): ResNet-50 on pixels + the same BERT text branch.

Image branch (`image_net.ResNetEncoder`): torchvision resnet50 whose `fc` maps 2048 -> final_dims,
then minus (median + 1e-8) and tanh(10x); no softmax on this side. Images are resized to
image_size x image_size (256, aspect ratio not kept), scaled to [0,1] and ImageNet-normalised,
as the repository's test transform does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fico_registry.errors import CheckpointError, ConfigError, InputError, ShapeError

from .checkpoint import AdvCheckpoint, infer_text_architecture
from .config import AdvConfig
from .hashing import TEXT_SCALE, median_centred_tanh
from .model import AdvEncoder, build_networks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetEncoder(nn.Module):
    """Keys `backbone.*`: a torchvision ResNet whose fc emits final_dims values."""

    def __init__(self, final_dims: int, block: str = "bottleneck", layers: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        from fico_registry.plugin_api.compat import ensure_torchvision

        ensure_torchvision()
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        self.backbone = ResNet(Bottleneck if block == "bottleneck" else BasicBlock, list(layers))
        self.backbone.fc = nn.Linear(self.backbone.fc.in_features, final_dims)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return median_centred_tanh(self.backbone(pixels), TEXT_SCALE)


class ScreenEncoder(AdvEncoder):
    """Encoder for 'pixels' input: a list of PIL images or a stacked tensor of preprocess_image outputs."""

    def preprocess_image(self, image: Any) -> torch.Tensor:
        from fico_registry.plugin_api.compat import ensure_torchvision

        ensure_torchvision()
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        size = self.config.image_size
        image = TF.resize(image.convert("RGB"), [size, size], interpolation=InterpolationMode.BILINEAR)
        return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)

    def _image_batch(self, batch: Any) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            size = self.config.image_size
            if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, size, size):
                raise ShapeError(
                    f"pixel tensors must be (n, 3, {size}, {size}) from preprocess_image, got {tuple(batch.shape)}"
                )
            pixels = batch
        elif isinstance(batch, list | tuple) and all(hasattr(img, "convert") for img in batch):
            pixels = torch.stack([self.preprocess_image(img) for img in batch])
        else:
            raise InputError(
                f"adv-screen takes a list of PIL images or a (n, 3, H, W) tensor, got {type(batch).__name__}"
            )
        return pixels.to(device=self.device, dtype=self.dtype)


def infer_screen_architecture(ckpt: AdvCheckpoint) -> dict[str, Any]:
    where = f"{ckpt.path} model[0] (img_enc)"
    try:
        final_dims = int(ckpt.image_state["backbone.fc.weight"].shape[0])
    except KeyError:
        raise CheckpointError(f"{where} has no 'backbone.fc.weight': not an ADV screen model") from None
    facts = infer_text_architecture(ckpt)
    if facts["final_dims"] != final_dims:
        raise CheckpointError(
            f"{ckpt.path}: image codes have {final_dims} dims (backbone.fc) but text codes {facts['final_dims']}"
        )
    return facts


def build(*, spec: Any = None, config: dict[str, Any], checkpoint: Any = None, device: str = "cpu") -> ScreenEncoder:
    cfg = AdvConfig.from_dict(config)
    if cfg.image_backbone != "resnet50":
        raise ConfigError("fico_adv.screen:build builds the screen model: its config needs image_backbone='resnet50'")

    def resnet(c: AdvConfig) -> nn.Module:
        return ResNetEncoder(c.final_dims, c.resnet_block, tuple(c.resnet_layers))

    cfg, image_net, text_net, tokenizer = build_networks(cfg, checkpoint, infer_screen_architecture, resnet)
    return ScreenEncoder(image_net, text_net, tokenizer, cfg, device)
