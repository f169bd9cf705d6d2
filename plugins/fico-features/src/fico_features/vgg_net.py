"""The networks: torchvision's VGG-19, a tiny VGG-shaped stand-in, and the fc7 read-out.

"fc7" is what UCCH's own feature mode reads (nets/vgg.py, ``classifier.children()[0:-2]``):
classifier[:5] = fc6 Linear, ReLU, Dropout, fc7 Linear, ReLU. In eval mode the dropout is the
identity, so the feature is ReLU(fc7(ReLU(fc6(x)))), non-negative, 4096-d.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.checkpoints import state_dict_mismatches
from fico_registry.plugin_api.compat import ensure_torchvision

FC7_END = 5  # classifier[:5] ends after fc7's ReLU


def build_vgg19() -> nn.Module:
    """torchvision's VGG-19 (configuration "E", no batch norm), 1000 classes, random init."""
    ensure_torchvision()
    from torchvision.models import vgg19

    return vgg19(weights=None)


class TinyVGG(nn.Module):
    """NOT VGG-19: the same module names (features / avgpool / classifier[0..6]) and a 4096-d fc7,
    with a couple of narrow conv stages, so tests run the real read-out and loading code in ms."""

    def __init__(self, layers: Sequence[int | str], pool: int, fc6: int, classes: int, fc7: int = 4096) -> None:
        super().__init__()
        ensure_torchvision()
        from torchvision.models.vgg import make_layers

        channels = [v for v in layers if v != "M"]
        if not channels or not all(isinstance(v, int) and v > 0 for v in channels):
            raise ConfigError(f"tiny_layers must list positive channel counts and 'M' (max-pool); got {list(layers)}")
        self.features = make_layers(list(layers), batch_norm=False)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(channels[-1] * pool * pool, fc6),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(fc6, fc7),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(fc7, classes),
        )


def build_network(config: Mapping[str, Any]) -> nn.Module:
    arch = config.get("arch", "vgg19")
    if arch == "vgg19":
        return build_vgg19()
    if arch == "tiny":
        return TinyVGG(config["tiny_layers"], config["tiny_pool"], config["tiny_fc6"], config["tiny_classes"])
    raise ConfigError(f"vgg19-fc7: unknown arch {arch!r}; use 'vgg19' (the published network) or 'tiny' (tests)")


def fc7(net: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) normalised pixels -> (B, 4096) fc7 activations after ReLU (net in eval mode)."""
    x = net.features(pixels)
    x = net.avgpool(x)
    x = torch.flatten(x, 1)
    return net.classifier[:FC7_END](x)


def check_state_dict(net: nn.Module, state: Mapping[str, Any], *, what: str) -> None:
    """Every key of the network present with its shape, nothing else (works on a meta-device net)."""
    parts = state_dict_mismatches(net.state_dict(), state, sides=("file", "network"))
    if parts:
        raise CheckpointError(
            f"{what} is not a torchvision VGG-19 state dict (the vgg19-dcbb9e9d.pth layout): " + " | ".join(parts)
        )
