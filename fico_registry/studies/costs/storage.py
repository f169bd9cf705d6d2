"""Storage from shapes and dtypes: bytes per item of what must be kept, at any collection size.

Two kinds of bytes are kept apart:
- embedding: what the first (or only) stage of search compares — continuous vectors as the model
  returns them (float32 unless the model runs in fp16/bf16), hash codes packed at one bit per bit;
- attention: features that must be kept for query-time attention — all of a cross-attention
  model's outputs (region and word features, lengths), and everything a fusion re-rank model
  returns besides its first-stage "embeds" (image token states, text ids and masks).
Entries of a continuous / binary model's output dict other than "embeds" are never read by the
evaluator, so they are listed as "unused" and counted nowhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention
from fico_registry.studies.costs.scales import Scale

GIB = 2**30


@dataclass(frozen=True)
class TensorLayout:
    """One output tensor of one item: its shape without the item axis, dtype, role, bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    role: str  # "embedding" | "attention" | "unused"
    bytes_per_item: int  # as stored (hash codes packed)
    output_bytes_per_item: int  # as the model returned it

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "role": self.role,
            "bytes_per_item": self.bytes_per_item,
            "output_bytes_per_item": self.output_bytes_per_item,
        }


def _role(kind: OutputKind, attention: QueryTimeAttention | None, name: str) -> str:
    if kind is OutputKind.SIMILARITY:
        if attention is QueryTimeAttention.CROSS_ATTENTION:
            return "attention"  # score() receives every feature, embeds included
        return "embedding" if name == "embeds" else "attention"
    return "embedding" if name == "embeds" else "unused"


def side_layout(
    outputs: Any, kind: OutputKind, attention: QueryTimeAttention | None, bits: int | None = None
) -> list[TensorLayout]:
    """The per-item layout of one side's encoder outputs (a tensor or a dict of tensors)."""
    items = outputs.items() if isinstance(outputs, dict) else [("embeds", outputs)]
    layout = []
    for name, tensor in items:
        shape = tuple(int(s) for s in tensor.shape[1:])
        output_bytes = math.prod(shape) * tensor.element_size()
        role = _role(kind, attention, name)
        stored = output_bytes
        dtype = str(tensor.dtype).replace("torch.", "")
        if kind is OutputKind.BINARY and role == "embedding":
            if bits is None:  # width unknown: uint8 output is already packed, anything else is one bit per entry
                bits = math.prod(shape) * (8 if dtype == "uint8" else 1)
            stored = math.ceil(bits / 8)  # packed: one bit per code bit
            dtype = f"bit ({bits} packed into {stored} bytes; model returned {dtype})"
        layout.append(TensorLayout(name, shape, dtype, role, stored, output_bytes))
    return layout


def bytes_per_item(layout: list[TensorLayout], role: str) -> int:
    return sum(t.bytes_per_item for t in layout if t.role == role)


@dataclass(frozen=True)
class StorageModel:
    """Per-item bytes of both sides; storage at any scale is exact arithmetic on these."""

    image: list[TensorLayout]
    text: list[TensorLayout]

    def per_item(self) -> dict[str, dict[str, int]]:
        return {
            side: {"embedding": bytes_per_item(layout, "embedding"), "attention": bytes_per_item(layout, "attention")}
            for side, layout in (("image", self.image), ("text", self.text))
        }

    def output_bytes(self, scale: Scale) -> int:
        """Bytes of everything the encoders return at `scale` (what a run holds in memory)."""
        per_image = sum(t.output_bytes_per_item for t in self.image)
        per_text = sum(t.output_bytes_per_item for t in self.text)
        return per_image * scale.n_images + per_text * scale.n_texts

    def at(self, scale: Scale) -> dict[str, Any]:
        """Bytes and GiB of embeddings and of query-time features at `scale` (n x bytes per item)."""
        per = self.per_item()
        out: dict[str, Any] = {"scale": scale.label, "n_images": scale.n_images, "n_texts": scale.n_texts}
        total = 0
        for role in ("embedding", "attention"):
            image_bytes = per["image"][role] * scale.n_images
            text_bytes = per["text"][role] * scale.n_texts
            out[f"{role}_bytes"] = {"images": image_bytes, "texts": text_bytes, "total": image_bytes + text_bytes}
            out[f"{role}_gib"] = round((image_bytes + text_bytes) / GIB, 6)
            total += image_bytes + text_bytes
        out["total_bytes"] = total
        out["total_gib"] = round(total / GIB, 6)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_item": self.per_item(),
            "layout": {"image": [t.to_dict() for t in self.image], "text": [t.to_dict() for t in self.text]},
        }
