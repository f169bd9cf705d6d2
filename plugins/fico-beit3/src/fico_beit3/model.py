"""The encoder the registry loads: BEiT3ForRetrieval plus its image and caption preparation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.cards import ModelSpec

from .architecture import BEiT3ForRetrieval
from .config import Beit3Config
from .image import ImagePreprocessor
from .text import CaptionTokenizer, make_tokenizer
from .weights import load_into, read_state_dict

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class Beit3Encoder:
    """encode_images / encode_texts -> (B, dim) L2-normalised float32 embeddings (score = dot product)."""

    def __init__(
        self,
        network: BEiT3ForRetrieval,
        tokenizer: CaptionTokenizer,
        preprocessor: ImagePreprocessor,
        *,
        dim: int,
        device: str,
        precision: str,
    ) -> None:
        self.network = network
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.dim = dim
        self.device = torch.device(device)
        self.precision = precision

    def preprocess_image(self, image: Any) -> torch.Tensor:
        return self.preprocessor(image)

    @torch.no_grad()
    def encode_images(self, batch: Any) -> torch.Tensor:
        pixels = self.preprocessor.batch(batch)
        if pixels.shape[0] == 0:
            return torch.empty(0, self.dim, device=self.device)
        with self._autocast():
            return self.network.encode_pixels(pixels.to(self.device)).float()

    @torch.no_grad()
    def encode_texts(self, batch: Any) -> torch.Tensor:
        captions = self.tokenizer(batch)
        if captions.ids.shape[0] == 0:
            return torch.empty(0, self.dim, device=self.device)
        with self._autocast():
            out = self.network.encode_text_ids(captions.ids.to(self.device), captions.padding_mask.to(self.device))
        return out.float()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        # unilm evaluates under torch.cuda.amp.autocast(): fp32 weights, fp16 matmuls.
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def random_model(config: Beit3Config) -> BEiT3ForRetrieval:
    """A randomly initialised network (PyTorch default inits, reproducible from config.seed)."""
    with _seeded(config.seed):
        return BEiT3ForRetrieval(config)


def pretrained_model(config: Beit3Config, path: Path) -> BEiT3ForRetrieval:
    """The network with a unilm checkpoint's weights; built on the meta device so that the
    full-size model is never allocated twice."""
    state = read_state_dict(path)
    with torch.device("meta"):
        network = BEiT3ForRetrieval(config)
    load_into(network, state, what=f"checkpoint {path}")
    return network


def _checkpoint_path(spec: ModelSpec, checkpoint: Path | str | None) -> Path | None:
    if checkpoint is None:
        return None
    if isinstance(checkpoint, str) and not Path(checkpoint).exists():
        raise CheckpointError(
            f"{spec.name}: {checkpoint!r} is not a local file; BEiT-3 loads unilm .pth files only "
            f"(known: {', '.join(spec.checkpoints)}; download one and pass its path)"
        )
    path = Path(checkpoint)
    if path.is_dir():
        candidates = sorted(path.glob("*.pth"))
        if len(candidates) != 1:
            raise CheckpointError(
                f"{spec.name}: {path} is a folder with {len(candidates)} .pth files; pass the checkpoint file itself"
            )
        path = candidates[0]
    return path


def build(
    *, spec: ModelSpec, config: Mapping[str, Any], checkpoint: Path | str | None = None, device: str = "cpu"
) -> Beit3Encoder:
    cfg = Beit3Config.from_dict(config, model=spec.name)
    if cfg.precision != "fp32" and torch.device(device).type != "cuda":
        raise ConfigError(f"{spec.name}: precision {cfg.precision!r} is for CUDA devices; use 'fp32' on {device}")
    path = _checkpoint_path(spec, checkpoint)
    tokenizer = make_tokenizer(cfg, path, model=spec.name)  # before the weights: a missing spm fails fast
    network = random_model(cfg) if path is None else pretrained_model(cfg, path)
    network.to(device).eval().requires_grad_(False)
    preprocessor = ImagePreprocessor(cfg.image_size, cfg.image_mean, cfg.image_std, model=spec.name)
    return Beit3Encoder(network, tokenizer, preprocessor, dim=cfg.embed_dim, device=device, precision=cfg.precision)
