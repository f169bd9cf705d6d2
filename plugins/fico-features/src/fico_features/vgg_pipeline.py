"""The `vgg19-fc7` pipeline: PIL images -> (n, 4096) fc7 features, plus a fingerprint for caches.

Weights: torchvision's ImageNet VGG-19 state dict (vgg19-dcbb9e9d.pth), read from a local file
only (config "weights": a path, or a file name looked up in $FICO_HOME/checkpoints). Nothing is
downloaded. Without the file the network is randomly initialised (seeded) and a warning is
logged: fine for tests and timing, meaningless for accuracy; the fingerprint says "random".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import CheckpointError, ConfigError, InputError
from fico_registry.plugin_api import fico_home, sha256_of
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint

from .vgg_net import build_network, check_state_dict, fc7

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FINGERPRINT_VERSION = "vgg19-fc7/v1"


def resolve_weights(value: str | None) -> Path | None:
    """A path as given, else the name inside $FICO_HOME/checkpoints; None when absent."""
    if value is None:
        return None
    path = Path(value).expanduser()
    for candidate in (path, fico_home() / "checkpoints" / path.name):
        if candidate.is_file():
            return candidate.resolve()
    return None


class Vgg19Fc7Pipeline:
    """Batched, eval-mode, no-grad fc7 extraction. `compute` takes PIL images or a stacked
    (B, 3, crop, crop) tensor of `preprocess` outputs."""

    dim = 4096

    def __init__(self, config: Mapping[str, Any], device: str = "cpu") -> None:
        self.config = dict(config)
        self.device = torch.device(device)
        precision = self.config.get("precision", "fp32")
        if precision not in DTYPES:
            raise ConfigError(f"vgg19-fc7: precision must be one of {', '.join(DTYPES)}; got {precision!r}")
        self.dtype = DTYPES[precision]
        self.batch_size = int(self.config.get("batch_size", 16))
        self.resize = self.config.get("resize", 256)
        self.crop = int(self.config.get("crop", 224))
        self.weights_path = resolve_weights(self.config.get("weights"))
        self.weights_sha256: str | None = None
        if self.config.get("weights") is not None and self.weights_path is None:
            wanted = self.config["weights"]
            where = f"{wanted} or {fico_home() / 'checkpoints' / Path(wanted).name}"
            if self.config.get("require_weights"):
                raise CheckpointError(f"vgg19-fc7: weights file not found ({where}); download it from torchvision")
            log.warning(
                "vgg19-fc7: weights file not found (%s): using RANDOM weights; features are useless for accuracy "
                "(fine for timing). Put torchvision's vgg19-dcbb9e9d.pth there to get ImageNet features.",
                where,
            )
        self.net = self._load_network()

    def _load_network(self) -> torch.nn.Module:
        if self.weights_path is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.config.get("seed", 0)))
                net = build_network(self.config)
        else:
            self.weights_sha256 = self._verified_sha256(self.weights_path)
            with torch.device("meta"):  # no random init of 143M parameters we overwrite anyway
                net = build_network(self.config)
            state = load_torch_checkpoint(self.weights_path)
            if not isinstance(state, Mapping):
                raise CheckpointError(
                    f"{self.weights_path}: expected a state dict (name -> tensor), got {type(state).__name__}"
                )
            check_state_dict(net, state, what=str(self.weights_path))
            net.load_state_dict(state, strict=True, assign=True)
        return net.to(self.device, self.dtype).eval().requires_grad_(False)

    def _verified_sha256(self, path: Path) -> str:
        sha = sha256_of(path)
        expected = self.config.get("weights_sha256")
        if expected and not sha.startswith(str(expected).lower()):
            raise CheckpointError(
                f"{path}: sha256 {sha} does not start with {expected} (torchvision's vgg19-dcbb9e9d.pth): a "
                "corrupt download or different weights. Set weights_sha256 to null to use other weights on purpose."
            )
        return sha

    # -- preprocessing -------------------------------------------------------------------------
    def preprocess(self, image: Any) -> torch.Tensor:
        """PIL image -> (3, crop, crop) float tensor: resize, centre crop, ImageNet normalisation."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        image = image.convert("RGB")
        size = list(self.resize) if isinstance(self.resize, Sequence) else int(self.resize)
        image = TF.resize(image, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        image = TF.center_crop(image, [self.crop, self.crop])
        return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)

    # -- the pipeline protocol -----------------------------------------------------------------
    @torch.inference_mode()
    def compute(self, items: Any) -> torch.Tensor:
        """(n, 4096) float32 fc7 features on the pipeline's device."""
        n = items.shape[0] if isinstance(items, torch.Tensor) else len(items)
        if n == 0:
            return torch.zeros(0, self.dim, device=self.device)
        parts = []
        for start in range(0, n, self.batch_size):
            chunk = items[start : start + self.batch_size]
            pixels = chunk if isinstance(chunk, torch.Tensor) else torch.stack([self.preprocess(im) for im in chunk])
            if pixels.ndim != 4 or pixels.shape[1] != 3:
                raise InputError(
                    f"vgg19-fc7: expected PIL images or a (B, 3, H, W) tensor, got shape {tuple(pixels.shape)}"
                )
            parts.append(fc7(self.net, pixels.to(self.device, self.dtype)).float())
        return torch.cat(parts)

    def fingerprint(self) -> str:
        """Identifies weights, architecture and preprocessing (part of the embedding-cache key)."""
        weights = f"sha256:{self.weights_sha256}" if self.weights_sha256 else f"random-seed{self.config.get('seed', 0)}"
        settings = {
            k: self.config.get(k)
            for k in ("arch", "resize", "crop", "precision", "tiny_layers", "tiny_pool", "tiny_fc6", "tiny_classes")
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        return f"{FINGERPRINT_VERSION}:{self.config.get('arch', 'vgg19')}:{weights}:fc7-relu:{digest}"


def build(*, config: Mapping[str, Any], device: str = "cpu") -> Vgg19Fc7Pipeline:
    return Vgg19Fc7Pipeline(config, device=device)
