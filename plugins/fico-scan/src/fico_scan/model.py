"""SCAN as a fico-registry cross-attention scorer, and the two-model ensemble of the paper.

encode_images(regions (B, 36, 2048)) -> {"regions": (B, 36, embed_size)}
encode_texts(list of str)             -> {"words": (B, max_words, embed_size), "lengths": (B,)}
score(images, texts)                  -> (n_img, n_txt): xattn_score_t2i or _i2t per opt.cross_attn
score_pairs(images, texts)            -> (P,): the same scores of P given pairs (a cascade's re-rank)
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fico_registry.errors import CheckpointError, ConfigError, DataFormatError
from fico_registry.plugin_api.checkpoints import strict_load_state_dict
from fico_registry.plugin_api.run_folders import checkpoint_in_run_folder

from .captions import CaptionEncoder, check_embedding, embedding_rows, resolve_vocabulary
from .encoders import build_encoders, upgrade_legacy_state
from .options import AGG_FUNCS, SCAN_OPT_DEFAULTS, check_common, merge_options, read_checkpoint
from .pairs import PairAttention, pairwise
from .xattn import Attention, CrossAttention, GridAttention, blockwise, xattn_scores

log = logging.getLogger(__name__)
RUN_CHECKPOINTS = ("model_best.pth.tar", "checkpoint.pth.tar")  # the best, else the last (fico train)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def regions_tensor(batch: Any, img_dim: int, device: torch.device | str, *, model_name: str) -> torch.Tensor:
    """A (B, n_regions, img_dim) float batch of bottom-up-attention features as float32."""
    x = torch.from_numpy(np.asarray(batch)) if not isinstance(batch, torch.Tensor) else batch
    if x.ndim != 3 or x.shape[-1] != img_dim:
        raise DataFormatError(
            f"{model_name}: region features must be (batch, regions, {img_dim}); got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise DataFormatError(f"{model_name}: region features must be floats, got {x.dtype}")
    return x.to(device=device, dtype=torch.float32)


class RegionWordScorer(ABC):
    """What SCAN and IMRAM share around their cross attention: the caption encoder, padded word
    features, and scoring every pair in budgeted blocks or given pairs only.

    A model says which directions it scores (their scores are summed) and how it scores one
    direction on a CrossAttention layout; pair_scores does the rest, on the grid or on pairs.
    """

    img_enc: nn.Module
    txt_enc: nn.Module

    def __init__(self, options: dict[str, Any], vocab: Any, device: str, *, model_name: str) -> None:
        self.options = options
        self.model_name = model_name
        self.device = torch.device(device)
        self.captions = CaptionEncoder(vocab, options, model_name=model_name)
        self.dim = int(options["embed_size"])
        self.img_dim = int(options["img_dim"])
        self.dtype = DTYPES[options["score_dtype"]]

    @abstractmethod
    def words_attend(self) -> tuple[bool, ...]:
        """The directions scored: True where the words attend over the regions (t2i), False for i2t."""

    @abstractmethod
    def direction_scores(self, cross: CrossAttention, words_attend: bool) -> torch.Tensor:
        """One direction's scores of the pairs the layout holds, context items first."""

    @abstractmethod
    def elements_per_pair(self, n_regions: int, n_words: int) -> int:
        """An estimate of the scorer's temporaries per (image, caption) pair, in numbers."""

    def pair_scores(
        self,
        regions: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        layout: type[CrossAttention] = GridAttention,
    ) -> torch.Tensor:
        """(n_img, n_txt) scores of every pair, all at once (differentiable: the training loss uses it);
        with layout=PairAttention, the (P,) scores of the pairs (regions[p], words[p])."""
        attention = Attention.from_options(self.options)
        total: torch.Tensor | None = None
        for words_attend in self.words_attend():
            if words_attend:  # words attend over regions
                cross = layout(regions, None, words, word_mask, attention)
                scores = self.direction_scores(cross, words_attend)
            else:  # regions attend over words
                cross = layout(words, word_mask, regions, None, attention)
                scores = cross.query_first(self.direction_scores(cross, words_attend))
            total = scores if total is None else total + scores
        assert total is not None, "a model scores at least one direction"
        return total

    def budget_elements(self) -> int:
        """How many score_dtype numbers the scorer's temporaries may hold (score_memory_mb)."""
        return int(self.options["score_memory_mb"] * 2**20 / (torch.finfo(self.dtype).bits // 8))

    @torch.no_grad()
    def encode_regions(self, batch: Any) -> torch.Tensor:
        return self.img_enc(regions_tensor(batch, self.img_dim, self.device, model_name=self.model_name))

    @torch.no_grad()
    def encode_words(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, max_words, dim) word features, zero beyond each caption, and the (B,) lengths."""
        max_words = self.captions.max_words
        if len(captions) == 0:
            return torch.zeros(0, max_words, self.dim, device=self.device), torch.zeros(
                0, dtype=torch.long, device=self.device
            )
        ids, lengths = self.captions(captions, self.device)
        words = self.txt_enc(ids, lengths)
        padded = words.new_zeros(words.shape[0], max_words, words.shape[2])
        padded[:, : words.shape[1]] = words
        return padded, lengths.to(self.device)

    @torch.no_grad()
    def score_features(self, regions: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(n_img, n_txt) scores in blocks that bound the temporaries (score_memory_mb)."""
        return blockwise(
            regions,
            words,
            lengths,
            self.pair_scores,
            elements_per_pair=partial(self.elements_per_pair, regions.shape[1]),
            budget_elements=self.budget_elements(),
            dtype=self.dtype,
        )

    @torch.no_grad()
    def score_pair_features(self, regions: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(P,) scores of the pairs (regions[p], words[p]): score_features' cells for those pairs only."""
        return pairwise(
            regions,
            words,
            lengths,
            partial(self.pair_scores, layout=PairAttention),
            elements_per_pair=self.pair_elements(regions, words, lengths),
            budget_elements=self.budget_elements(),
            dtype=self.dtype,
        )

    def pair_elements(self, regions: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor) -> int:
        """elements_per_pair for a batch of given pairs, its captions padded to the longest."""
        return self.elements_per_pair(regions.shape[1], max(1, int(lengths.max()) if len(lengths) else 0))


class ScanScorer(RegionWordScorer):
    """One SCAN model: its two encoders, its vocabulary, and the cross-attention scorer."""

    def __init__(self, options: dict[str, Any], vocab: Any, device: str, *, model_name: str = "scan") -> None:
        check_common(options, model_name=model_name)
        if options["cross_attn"] not in ("t2i", "i2t"):
            raise ConfigError(f"{model_name}: cross_attn must be 't2i' or 'i2t', got {options['cross_attn']!r}")
        if options["agg_func"] not in AGG_FUNCS:
            raise ConfigError(
                f"{model_name}: agg_func must be one of {', '.join(AGG_FUNCS)}, got {options['agg_func']!r}"
            )
        super().__init__(options, vocab, device, model_name=model_name)
        rows = embedding_rows(vocab, options, model_name=model_name)
        self.img_enc, self.txt_enc = build_encoders(options, rows)

    def words_attend(self) -> tuple[bool, ...]:
        return (self.options["cross_attn"] == "t2i",)

    def direction_scores(self, cross: CrossAttention, words_attend: bool) -> torch.Tensor:
        return xattn_scores(cross, self.options["agg_func"], float(self.options["lambda_lse"]))

    def elements_per_pair(self, n_regions: int, n_words: int) -> int:
        return 6 * n_regions * n_words  # logits, weights and their products

    def load_original(self, state: Any, *, where: str) -> None:
        """checkpoint['model'] = [img_enc.state_dict(), txt_enc.state_dict()] (strict)."""
        if isinstance(state, Mapping) and any(str(k).startswith("module.") for k in state):
            raise CheckpointError(
                f"{where}: this is a DataParallel (IMRAM-style) state dict; load it with model 'imram'"
            )
        if not isinstance(state, (list, tuple)) or len(state) != 2 or not all(isinstance(s, Mapping) for s in state):
            raise CheckpointError(
                f"{where}: checkpoint['model'] must be the list [img_enc.state_dict(), txt_enc.state_dict()] "
                f"that SCAN saves; found {type(state).__name__}"
            )
        img_state, txt_state = (upgrade_legacy_state(s) for s in state)
        if "embed.weight" in txt_state:
            check_embedding(
                txt_state["embed.weight"].shape[0], self.captions.vocab, self.options.get("opt_vocab_size"), where=where
            )
        strict_load_state_dict(self.img_enc, img_state, what=f"{where} model[0] (img_enc)")
        strict_load_state_dict(self.txt_enc, txt_state, what=f"{where} model[1] (txt_enc)")

    def finish(self) -> ScanScorer:
        self.img_enc.to(self.device).eval().requires_grad_(False)
        self.txt_enc.to(self.device).eval().requires_grad_(False)
        return self


class ScanEncoder:
    """The Encoder / Scorer the registry sees for model 'scan'."""

    def __init__(self, scorer: ScanScorer) -> None:
        self.scorer = scorer
        self.dim = scorer.dim
        self.options = scorer.options

    def encode_images(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"regions": self.scorer.encode_regions(batch)}

    def encode_texts(self, batch: Sequence[str]) -> dict[str, torch.Tensor]:
        words, lengths = self.scorer.encode_words(batch)
        return {"words": words, "lengths": lengths}

    def score(self, images: Mapping[str, torch.Tensor], texts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.scorer.score_features(images["regions"], texts["words"], texts["lengths"])

    def score_pairs(self, images: Mapping[str, torch.Tensor], texts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(P,) scores of the pairs (image p, text p): score's diagonal, the other pairs never computed."""
        return self.scorer.score_pair_features(images["regions"], texts["words"], texts["lengths"])


def _vocab_file_name(options: Mapping[str, Any]) -> str:
    return f"{options['data_name']}_vocab.json"


def build_scorer(
    config: Mapping[str, Any], checkpoint: Path | None, device: str, *, model_name: str = "scan"
) -> ScanScorer:
    opt, state = (None, None)
    if checkpoint is not None:
        # a run folder as train.py writes it: model_best.pth.tar in opt.model_name (runs/runX/checkpoint)
        checkpoint = checkpoint_in_run_folder(checkpoint, RUN_CHECKPOINTS, subfolders=("checkpoint",), model=model_name)
        opt, state = read_checkpoint(Path(checkpoint), model_name="SCAN")
    options = merge_options(config, opt, SCAN_OPT_DEFAULTS, where=str(checkpoint or model_name))
    vocab = resolve_vocabulary(options, checkpoint, file_name=_vocab_file_name(options), model_name=model_name, opt=opt)
    scorer = ScanScorer(options, vocab, device, model_name=model_name)
    if checkpoint is not None:
        scorer.load_original(state, where=f"SCAN checkpoint {checkpoint}")
    return scorer.finish()


def build(*, spec: Any, config: Mapping[str, Any], checkpoint: Path | str | None, device: str) -> ScanEncoder:
    if isinstance(checkpoint, str):
        raise CheckpointError(
            f"{spec.name}: SCAN checkpoints are local .pth.tar files (no hub); {checkpoint!r} is not a file here"
        )
    return ScanEncoder(build_scorer(config, checkpoint, device, model_name=spec.name))
