"""The built-in reference model: a small CNN image tower and a text transformer, two heads.

One network serves two registered models: `reference-dual` (continuous head, cosine) and
`reference-hash` (64-bit hash head, Hamming). Text is tokenised by hashing lower-cased words
into the vocabulary, so no vocabulary file is needed. Weights are stored as safetensors plus a
JSON config (no pickle): a folder with `model.safetensors` and `config.json`.
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fico_registry.errors import CheckpointError, ConfigError

PAD, CLS = 0, 1
_WORD = re.compile(r"[a-z0-9]+")
CONFIG_KEYS = ("image_size", "width", "embed_dim", "bits", "vocab_size", "max_len")


def tokenize(texts: list[str], vocab_size: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] + hashed word ids, padded to max_len; returns ids and a padding mask (True = pad)."""
    ids = torch.full((len(texts), max_len), PAD, dtype=torch.long)
    for row, text in enumerate(texts):
        words = _WORD.findall(text.lower())[: max_len - 1]
        tokens = [CLS] + [2 + zlib.crc32(w.encode()) % (vocab_size - 2) for w in words]
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids, ids == PAD


class ImageTower(nn.Module):
    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, width // 2, width, width * 2, width * 2]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(channels[-1] * 4, out_dim)  # 2x2 spatial pooling keeps where things are

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.features(pixels)
        x = F.adaptive_avg_pool2d(x, 2).flatten(1)
        return self.proj(x)


class TextTower(nn.Module):
    def __init__(self, vocab_size: int, max_len: int, width: int, out_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.zeros(max_len, width))
        layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, ids: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[: ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=pad)
        return self.proj(x[:, 0])


class ReferenceDualEncoder(nn.Module):
    def __init__(self, image_size: int, width: int, embed_dim: int, bits: int, vocab_size: int, max_len: int) -> None:
        super().__init__()
        self.config = dict(
            image_size=image_size, width=width, embed_dim=embed_dim, bits=bits, vocab_size=vocab_size, max_len=max_len
        )
        hidden = 2 * embed_dim
        self.image = ImageTower(width, hidden)
        self.text = TextTower(vocab_size, max_len, width, hidden)
        self.image_head = nn.Linear(hidden, embed_dim)
        self.text_head = nn.Linear(hidden, embed_dim)
        self.image_hash = nn.Linear(hidden, bits)
        self.text_hash = nn.Linear(hidden, bits)
        self.logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    def image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.image(pixels))
        return F.normalize(self.image_head(h), dim=-1), torch.tanh(self.image_hash(h))

    def text_features(self, ids: torch.Tensor, pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.text(ids, pad))
        return F.normalize(self.text_head(h), dim=-1), torch.tanh(self.text_hash(h))


def preprocess(image: Any, size: int) -> torch.Tensor:
    """RGB PIL image -> (3, size, size) float tensor in [-1, 1] (bilinear resize)."""
    from PIL import Image

    image = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class ReferenceEncoder:
    """Encoder protocol for one head of the reference network."""

    def __init__(self, network: ReferenceDualEncoder, head: str, device: str) -> None:
        self.network = network.to(device).eval()
        self.head = head
        self.device = device
        cfg = network.config
        if head == "hash":
            self.bits = cfg["bits"]
        else:
            self.dim = cfg["embed_dim"]

    def preprocess_image(self, image: Any) -> torch.Tensor:
        return preprocess(image, self.network.config["image_size"])

    @torch.no_grad()
    def encode_images(self, batch: Any) -> torch.Tensor:
        pixels = batch if isinstance(batch, torch.Tensor) else torch.stack([self.preprocess_image(i) for i in batch])
        continuous, relaxed = self.network.image_features(pixels.to(self.device))
        return continuous if self.head == "continuous" else _sign(relaxed)

    @torch.no_grad()
    def encode_texts(self, batch: list[str]) -> torch.Tensor:
        cfg = self.network.config
        ids, pad = tokenize(list(batch), cfg["vocab_size"], cfg["max_len"])
        continuous, relaxed = self.network.text_features(ids.to(self.device), pad.to(self.device))
        return continuous if self.head == "continuous" else _sign(relaxed)


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1, -1).to(torch.int8)  # sign(0) -> +1 so codes are always binary


def save_checkpoint(network: ReferenceDualEncoder, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    tmp = folder / "model.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(folder / "model.safetensors")
    (folder / "config.json").write_text(
        json.dumps({"model": "fico-reference", "config": network.config, **(extra or {})}, indent=2)
    )
    return folder


def load_network(checkpoint: str | Path | None, config: dict[str, Any]) -> ReferenceDualEncoder:
    if checkpoint is None:
        torch.manual_seed(int(config.get("seed", 0)))
        return ReferenceDualEncoder(**{k: int(config[k]) for k in CONFIG_KEYS})
    from safetensors.torch import load_file

    folder = Path(checkpoint)
    if folder.is_file():
        folder = folder.parent
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder} is not a reference-model checkpoint (config.json unreadable: {exc})") from None
    if meta.get("model") != "fico-reference":
        raise CheckpointError(f"{folder}/config.json does not describe a fico reference model")
    network = ReferenceDualEncoder(**{k: int(meta["config"][k]) for k in CONFIG_KEYS})
    state = load_file(str(folder / "model.safetensors"))
    from fico_registry.plugin_api.checkpoints import strict_load_state_dict

    strict_load_state_dict(network, state, what=f"reference checkpoint {folder}")
    return network


def build(*, spec: Any, config: dict[str, Any], checkpoint: Any = None, device: str = "cpu") -> ReferenceEncoder:
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing and checkpoint is None:
        raise ConfigError(f"{spec.name}: config lacks {', '.join(missing)}")
    network = load_network(checkpoint, config)
    head = "hash" if spec.name.endswith("hash") else "continuous"
    return ReferenceEncoder(network, head, device)
