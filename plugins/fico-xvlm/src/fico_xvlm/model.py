"""X-VLM retrieval encoders: ITC embeddings (both cards) and the ITM fusion re-rank (xvlm).

As Retrieval.evaluation: the Swin runs once per image and the text-only BERT layers once per
caption; their outputs (image tokens 145 x 1024, text states 40 x 768 with the padding mask)
are what the core caches and hands back to score_pairs, which runs only the fusion layers
and the ITM head on each candidate pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fico_registry.errors import CheckpointError, DataFormatError
from fico_registry.plugin_api.cards import ModelSpec, OutputKind
from fico_registry.plugin_api.run_folders import checkpoint_in_run_folder

from .architecture import XVLMRetrieval, random_model
from .config import check_config
from .image import ImagePreprocessor, encode_pixels
from .run_files import RUN_CHECKPOINTS, OriginalFile, apply_run_files, explain, saved_config, vocab_file
from .text import CaptionTokenizer, find_vocab, make_tokenizer

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class XVLMNoFusion:
    """xvlm-nf: images and texts -> (B, embed_dim) L2-normalised ITC embeddings (cosine)."""

    def __init__(
        self, model: XVLMRetrieval, images: ImagePreprocessor, captions: CaptionTokenizer, device: str
    ) -> None:
        self.model = model
        self.images = images
        self.captions = captions
        self.device = torch.device(device)
        self.dim = model.vision_proj.out_features

    def preprocess_image(self, image: Any) -> torch.Tensor:
        return self.images(image)

    def _pixels(self, batch: Any) -> torch.Tensor:
        return self.images.batch(batch).to(self.device)

    def _text_states(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, attention_mask = self.captions(batch)
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        return self.model.text_states(input_ids, attention_mask), attention_mask

    @torch.no_grad()
    def encode_images(self, batch: Any) -> Any:
        return encode_pixels(lambda p: self.model.image_embeds(self.model.image_states(p)).float(), self._pixels(batch))

    @torch.no_grad()
    def encode_texts(self, batch: Any) -> Any:
        states, _ = self._text_states(batch)
        return self.model.text_embeds(states).float()


class XVLMFusion(XVLMNoFusion):
    """xvlm: ITC first stage plus the states the fusion needs; score_pairs = ITM positive logit."""

    @torch.no_grad()
    def encode_images(self, batch: Any) -> dict[str, torch.Tensor]:
        return encode_pixels(self._image_features, self._pixels(batch))

    def _image_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        states = self.model.image_states(pixels)
        return {"embeds": self.model.image_embeds(states).float(), "image_states": states}

    @torch.no_grad()
    def encode_texts(self, batch: Any) -> dict[str, torch.Tensor]:
        states, attention_mask = self._text_states(batch)
        return {
            "embeds": self.model.text_embeds(states).float(),
            "text_states": states,
            "attention_mask": attention_mask,
        }

    @torch.no_grad()
    def score_pairs(self, images: Mapping[str, torch.Tensor], texts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Retrieval.evaluation's score of image i with text i: itm_head(fused [CLS])[:, 1], ITC not added."""
        _require(images, ("image_states",), "image")
        _require(texts, ("text_states", "attention_mask"), "text")
        n = images["image_states"].shape[0]
        if texts["text_states"].shape[0] != n:
            raise DataFormatError(
                f"xvlm.score_pairs: {n} images but {texts['text_states'].shape[0]} texts; rows pair up"
            )
        dtype = self.model.dtype
        logits = self.model.itm_logit(
            images["image_states"].to(self.device, dtype),
            texts["text_states"].to(self.device, dtype),
            texts["attention_mask"].to(self.device),
        )
        return logits.float()


def _require(features: Mapping[str, Any], keys: tuple[str, ...], kind: str) -> None:
    missing = [k for k in keys if k not in features]
    if missing:
        raise DataFormatError(
            f"xvlm.score_pairs: {kind} features lack {', '.join(missing)}; pass what encode_{kind}s returned"
        )


def load_weights(
    config: Mapping[str, Any],
    checkpoint: Path | None,
    loaded: tuple[dict[str, Any], Mapping[str, Any] | None] | None = None,
    not_found: Sequence[OriginalFile] = (),
) -> XVLMRetrieval:
    if checkpoint is None:
        return random_model(config).eval()
    from .weights import load_checkpoint

    try:
        return load_checkpoint(config, checkpoint, loaded=loaded)
    except CheckpointError as exc:  # a mismatch the run's own JSON configs would have settled: name them
        raise explain(exc, list(not_found), checkpoint) from None


def build(*, spec: ModelSpec, config: Mapping[str, Any], checkpoint: Path | str | None = None, device: str = "cpu"):
    """Factory for both cards: xvlm (fusion re-rank) and xvlm-nf (ITC only).

    With a checkpoint (a file, or Retrieval.py's output_dir holding checkpoint_best.pth), the
    Swin / BERT JSON configs and vocab.txt its saved config points to are used (run_files).
    """
    check_config(config)
    if isinstance(checkpoint, str):
        raise CheckpointError(
            f"xvlm checkpoints are local files, not hub ids ({checkpoint!r}): download the X-VLM .pth / .th "
            "(see plugins/fico-xvlm/README.md) and pass checkpoint=PATH"
        )
    loaded, not_found, wanted_vocab = None, [], None
    if checkpoint is not None:
        from .weights import read_checkpoint

        checkpoint = checkpoint_in_run_folder(checkpoint, RUN_CHECKPOINTS, model="xvlm")
        state, saved = read_checkpoint(checkpoint)
        saved = saved_config(checkpoint, saved)
        config, not_found = apply_run_files(config, saved, checkpoint)
        check_config(config)
        wanted_vocab, loaded = vocab_file(saved), (state, saved)
    vocab = find_vocab(config, checkpoint, original=wanted_vocab)  # before the weights: fails fast
    model = load_weights(config, checkpoint, loaded, not_found)
    model.requires_grad_(False)
    model.to(device=device, dtype=_DTYPES[config.get("precision", "fp32")])
    tokenizer = make_tokenizer(vocab, config["vocab_size"])
    images = ImagePreprocessor(config["image_res"], config["image_mean"], config["image_std"])
    captions = CaptionTokenizer(tokenizer, max_tokens=config["max_tokens"], max_words=config["max_words"])
    encoder_class = XVLMFusion if spec.output is OutputKind.SIMILARITY else XVLMNoFusion
    return encoder_class(model, images, captions, device)
