"""Build the retrieval model and fill it from a checkpoint, strictly.

Accepted checkpoints:
  - None: random weights (seeded);
  - a transformers folder (config.json + model.safetensors / pytorch_model.bin), e.g. a download
    of Salesforce/blip2-itm-vit-g-coco; its config.json defines the architecture;
  - a hub id, handed to from_pretrained (works offline only from the local hub cache);
  - a LAVIS file (`{"model": state_dict}`, e.g. blip2_finetune_coco.pth), renamed in memory;
    the plugin config defines the architecture;
  - a single weights file with transformers names (.safetensors, .bin, .pth), plugin config architecture.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint, strict_load_state_dict

from .architecture import import_transformers, random_model
from .lavis_keys import lavis_to_hf_state_dict, unwrap_lavis_checkpoint

log = logging.getLogger(__name__)
HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def load_retrieval_model(config: Mapping[str, Any], checkpoint: Path | str | None) -> Any:
    """A float32 Blip2ForImageTextRetrieval in eval mode."""
    if checkpoint is None:
        model = random_model(config)
    elif isinstance(checkpoint, str):
        model = _from_pretrained(checkpoint, what=f"hub checkpoint {checkpoint}")
    elif checkpoint.is_dir():
        model = _from_folder(checkpoint)
    else:
        model = _from_file(config, checkpoint)
    return model.eval()


def _from_folder(folder: Path) -> Any:
    if not (folder / "config.json").is_file() or not any((folder / f).is_file() for f in HF_WEIGHT_FILES):
        raise CheckpointError(
            f"{folder} is not a transformers BLIP-2 folder: it needs config.json and model.safetensors "
            "(or pytorch_model.bin), plus vocab.txt, as in Salesforce/blip2-itm-vit-g-coco"
        )
    return _from_pretrained(str(folder), what=str(folder))


def _from_pretrained(location: str, *, what: str) -> Any:
    import torch

    Blip2ForImageTextRetrieval = import_transformers().Blip2ForImageTextRetrieval
    try:
        model, info = Blip2ForImageTextRetrieval.from_pretrained(
            location, dtype=torch.float32, output_loading_info=True
        )
    except OSError as exc:
        if Path(location).exists():
            raise CheckpointError(f"{what}: transformers cannot read it ({_first_line(exc)})") from None
        raise CheckpointError(
            f"cannot load {location} from the hub (offline or unknown repo): download config.json, "
            f"model.safetensors (or pytorch_model.bin) and vocab.txt from https://huggingface.co/{location} "
            "into a folder and pass checkpoint=FOLDER"
        ) from None
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{what} is not a BLIP-2 retrieval checkpoint ({_first_line(exc)})") from None
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or ())
        if keys:
            problems.append(f"{kind.replace('_', ' ')}: {', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''}")
    if info.get("error_msgs"):
        problems.append(f"errors: {'; '.join(map(str, info['error_msgs']))[:500]}")
    if problems:
        raise CheckpointError(
            f"{what} does not match Blip2ForImageTextRetrieval (its config.json must describe the retrieval "
            "model, with qformer_config.use_qformer_text_input=true): " + " | ".join(problems)
        )
    return model


def _from_file(config: Mapping[str, Any], path: Path) -> Any:
    model = random_model(config)
    expected = list(model.state_dict())
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Mapping[str, Any] = load_file(str(path))
    else:
        state = load_torch_checkpoint(path)
    if _looks_like_hf(state):
        what = f"{path} (transformers parameter names)"
    else:
        state = lavis_to_hf_state_dict(unwrap_lavis_checkpoint(state, str(path)), expected, where=str(path))
        what = f"{path} (LAVIS, renamed to transformers names)"
    try:
        strict_load_state_dict(model, state, what=what)
    except CheckpointError as exc:
        hint = ""
        if "position_embedding" in str(exc):
            hint = (
                " — the ViT position table encodes the image size: the LAVIS COCO fine-tune is 364 px "
                "(config image_size=364), stage-1 / pretrain checkpoints are 224 px (config={'image_size': 224})"
            )
        raise CheckpointError(f"{exc}{hint}") from None
    return model


def _looks_like_hf(state: Any) -> bool:
    return (
        isinstance(state, Mapping)
        and "query_tokens" in state
        and any(str(k).startswith("vision_model.") or str(k).startswith("qformer.") for k in state)
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
