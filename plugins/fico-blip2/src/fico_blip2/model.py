"""BLIP-2 retrieval encoders: ITC embeddings (both models) and the ITM fusion re-rank (blip2).

Everything runs on the submodules of transformers' Blip2ForImageTextRetrieval so that the
ViT runs once per image: its output tokens are cached by the core and handed back to
score_pairs, as LAVIS's compute_sim_matrix caches `vit_feats`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fico_registry.errors import DataFormatError
from fico_registry.plugin_api.bert import bert_tokenizer
from fico_registry.plugin_api.cards import ModelSpec, OutputKind
from fico_registry.plugin_api.compat import ensure_torchvision

from .architecture import check_config
from .image import ImagePreprocessor, encode_pixels
from .text import CaptionTokenizer, find_vocab

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Blip2Core:
    """The four BLIP-2 computations, each on already prepared inputs."""

    def __init__(self, model: Any, device: str) -> None:
        self.model = model
        self.device = torch.device(device)
        self.num_queries = model.query_tokens.shape[1]
        self.qformer_dtype = model.query_tokens.dtype

    def vit_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, s, s) -> (B, 1 + patches, vision width): ViT output after its last LayerNorm (LAVIS ln_vision)."""
        vision = self.model.vision_model
        pixels = pixels.to(self.device, vision.embeddings.patch_embedding.weight.dtype)
        return vision(pixel_values=pixels).last_hidden_state

    def image_embeds(self, tokens: torch.Tensor) -> torch.Tensor:
        """ViT tokens -> (B, queries, embed_dim) L2-normalised ITC query embeddings."""
        tokens = tokens.to(self.device)
        queries = self.model.query_tokens.expand(tokens.shape[0], -1, -1)
        out = self.model.qformer(
            query_embeds=queries,
            encoder_hidden_states=tokens,
            encoder_attention_mask=self._ones(tokens),
        ).last_hidden_state
        return F.normalize(self.model.vision_projection(out), dim=-1)

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids -> (B, embed_dim) L2-normalised projection of the Q-Former text [CLS] state."""
        embeddings = self.model.embeddings(input_ids=input_ids.to(self.device))
        out = self.model.qformer(
            query_embeds=embeddings, query_length=0, attention_mask=attention_mask.to(self.device)
        ).last_hidden_state
        return F.normalize(self.model.text_projection(out[:, 0, :]), dim=-1)

    def itm_logit(self, tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Paired rows -> (n,) ITM positive logit (LAVIS compute_itm): queries and text share
        self-attention, queries cross-attend to the image; itm_head over the query outputs,
        positive-class logit averaged over the queries."""
        tokens = tokens.to(self.device)
        n = tokens.shape[0]
        queries = self.model.query_tokens.expand(n, -1, -1)
        query_mask = torch.ones(n, self.num_queries, dtype=attention_mask.dtype, device=self.device)
        mask = torch.cat([query_mask, attention_mask.to(self.device)], dim=1)
        embeddings = self.model.embeddings(input_ids=input_ids.to(self.device), query_embeds=queries)
        out = self.model.qformer(
            query_embeds=embeddings,
            query_length=self.num_queries,
            attention_mask=mask,
            encoder_hidden_states=tokens,
            encoder_attention_mask=self._ones(tokens),
        ).last_hidden_state
        logits = self.model.itm_head(out[:, : self.num_queries, :])
        return logits[:, :, 1].mean(dim=1)

    def _ones(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.ones(tokens.shape[:-1], dtype=torch.long, device=self.device)


def itc_similarity(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """Paired rows: max over the queries of <query embedding, text embedding> -> (n,)."""
    return torch.einsum("nqd,nd->nq", image_embeds, text_embeds).max(dim=1).values


class Blip2NoFusion:
    """blip2-nf: images -> (B, 32, 256) query embeddings, texts -> (B, 256); compared by maxsim."""

    def __init__(self, core: Blip2Core, images: ImagePreprocessor, captions: CaptionTokenizer, dim: int) -> None:
        self.core = core
        self.images = images
        self.captions = captions
        self.dim = dim
        self.device = core.device

    def preprocess_image(self, image: Any) -> torch.Tensor:
        return self.images(image)

    @torch.no_grad()
    def encode_images(self, batch: Any) -> Any:
        return encode_pixels(lambda p: self.core.image_embeds(self.core.vit_tokens(p)), self.images.batch(batch))

    @torch.no_grad()
    def encode_texts(self, batch: Any) -> Any:
        input_ids, attention_mask = self.captions(_captions(batch))
        return self.core.text_embeds(input_ids, attention_mask)


class Blip2Fusion(Blip2NoFusion):
    """blip2: ITC first stage plus the features the ITM needs, and score_pairs = ITM logit + ITC sim."""

    @torch.no_grad()
    def encode_images(self, batch: Any) -> dict[str, torch.Tensor]:
        return encode_pixels(self._image_features, self.images.batch(batch))

    def _image_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.core.vit_tokens(pixels)
        return {"embeds": self.core.image_embeds(tokens), "vit_tokens": tokens}

    @torch.no_grad()
    def encode_texts(self, batch: Any) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = self.captions(_captions(batch))
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        embeds = self.core.text_embeds(input_ids, attention_mask)
        return {"embeds": embeds, "input_ids": input_ids, "attention_mask": attention_mask}

    @torch.no_grad()
    def score_pairs(self, images: Mapping[str, torch.Tensor], texts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """LAVIS full-retrieval score of image i with text i: ITM positive logit + ITC similarity."""
        _require(images, ("embeds", "vit_tokens"), "image")
        _require(texts, ("embeds", "input_ids", "attention_mask"), "text")
        n = images["embeds"].shape[0]
        if texts["embeds"].shape[0] != n:
            raise DataFormatError(f"blip2.score_pairs: {n} images but {texts['embeds'].shape[0]} texts; rows pair up")
        itm = self.core.itm_logit(images["vit_tokens"], texts["input_ids"], texts["attention_mask"])
        itc = itc_similarity(images["embeds"].to(self.device), texts["embeds"].to(self.device))
        return itm.float() + itc.float()


def _captions(batch: Any) -> list[str]:
    if isinstance(batch, str) or not all(isinstance(c, str) for c in batch):
        raise DataFormatError("blip2 expects a list of caption strings")
    return list(batch)


def _require(features: Mapping[str, Any], keys: tuple[str, ...], kind: str) -> None:
    missing = [k for k in keys if k not in features]
    if missing:
        raise DataFormatError(
            f"blip2.score_pairs: {kind} features lack {', '.join(missing)}; pass what encode_{kind}s returned"
        )


def build(*, spec: ModelSpec, config: Mapping[str, Any], checkpoint: Path | str | None = None, device: str = "cpu"):
    """Factory for both cards: blip2 (fusion re-rank) and blip2-nf (ITC only)."""
    check_config(config)
    ensure_torchvision()  # before transformers' vision code is first imported
    from .weights import load_retrieval_model

    model = load_retrieval_model(config, checkpoint)
    vocab_size = model.config.qformer_config.vocab_size
    tokenizer = bert_tokenizer(find_vocab(config, checkpoint), vocab_size, embedder="the Q-Former")  # uncased
    model.requires_grad_(False)
    model.to(device)
    # The ViT carries the cost; the Q-Former, queries and heads stay fp32 as transformers keeps them.
    model.vision_model.to(_DTYPES[config.get("precision", "fp32")])

    vision = model.config.vision_config
    image_size = vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0]
    images = ImagePreprocessor(image_size, config["image_mean"], config["image_std"])
    captions = CaptionTokenizer(tokenizer, max_tokens=config["max_text_tokens"], max_words=config["max_words"])
    encoder_class = Blip2Fusion if spec.output is OutputKind.SIMILARITY else Blip2NoFusion
    return encoder_class(Blip2Core(model, device), images, captions, dim=model.config.image_text_hidden_size)
