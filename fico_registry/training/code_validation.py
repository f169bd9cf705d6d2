"""Validation of hashing recipes (UCCH, DADH): sign codes of the validation split, Hamming ranking, mAP or rsum.

Imported only while training (torch at the top).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from fico_registry.errors import ConfigError
from fico_registry.training.loop import Validation

SELECT_BY = ("map", "rsum")


def check_select_by(select_by: str, val: Any) -> None:
    """`select_by` is known, and mAP selection has category labels on the validation split."""
    if select_by not in SELECT_BY:
        raise ConfigError(f"select_by must be 'map' or 'rsum', got {select_by!r}")
    if select_by == "map" and val.labels is None:
        raise ConfigError(f"{val!r} has no category labels for mAP-based selection: pass --set select_by=rsum")


@torch.no_grad()
def sign_codes(
    encode: Callable[[torch.Tensor], torch.Tensor], features: np.ndarray, batch: int, device: str
) -> torch.Tensor:
    """±1 int8 codes of `encode`'s outputs (>= 0 -> +1) on `features`, `batch` rows at a time."""
    parts = [encode(torch.from_numpy(features[s : s + batch]).to(device)).cpu()
             for s in range(0, len(features), batch)]  # fmt: skip
    return torch.where(torch.cat(parts) >= 0, 1, -1).to(torch.int8)


def validate_codes(images: torch.Tensor, texts: torch.Tensor, val: Any, select_by: str) -> dict[str, Any]:
    """rsum and instance recalls, with labels the category mAP over the whole ranking (map_i2t, map_t2i, map_avg);
    "score" is the selection score: map_avg or rsum, per `select_by`."""
    from fico_registry.evaluator.evaluate import evaluate_embeddings
    from fico_registry.training.common import validation_rsum

    report = evaluate_embeddings(images, texts, val.caption_to_image, val.labels, measure="hamming", map_ks=(None,),
                                 device="cpu", progress=False)  # fmt: skip
    out: dict[str, Any] = {"rsum": validation_rsum(report), "instance": report.instance}
    if report.category is not None:  # present exactly when the split has labels
        out["map_i2t"] = float(report.category["i2t"]["mAP@N"])
        out["map_t2i"] = float(report.category["t2i"]["mAP@N"])
        out["map_avg"] = (out["map_i2t"] + out["map_t2i"]) / 2
    out["score"] = out["map_avg"] if select_by == "map" else out["rsum"]
    return out


def feature_configs(image_features: Any, text_features: Any, config_name: str | None) -> tuple[Any, Any]:
    """vgg19-fc7 / doc2vec configs: as asked, else the one the evaluator pairs with the model config."""
    automatic = "tiny" if config_name == "tiny" else "default"
    image = image_features if image_features is not None else automatic
    text = text_features if text_features is not None else (image if isinstance(image, str) else automatic)
    return image, text


def as_validation(metrics: Mapping[str, Any]) -> Validation:
    """`validate_codes`'s metrics as the loop's Validation: the history row holds them, instance recalls under "val"."""
    entries = {key: value for key, value in metrics.items() if key != "instance"}
    return Validation(metrics["score"], {**entries, "val": metrics["instance"]})


def check_widths(image_features: np.ndarray, text_features: np.ndarray, image_dim: int, text_dim: int) -> None:
    """The training features are as wide as the model config's networks expect."""
    for what, array, width in (("image", image_features, image_dim), ("text", text_features, text_dim)):
        if array.shape[1] != width:
            raise ConfigError(f"the {what} features are {array.shape[1]}-d but the model config expects {width}")
