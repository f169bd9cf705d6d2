"""IMRAM as a fico-registry cross-attention scorer.

encode_images(regions (B, 36, 2048)) -> {"regions": (B, 36, embed_size)}
encode_texts(list of str)             -> {"words": (B, max_words, embed_size), "lengths": (B,)}
score(images, texts)                  -> (n_img, n_txt): sum over iteration_step steps of Text-IMRAM,
                                         Image-IMRAM or both (opt.model_mode)
score_pairs(images, texts)            -> (P,): the same scores of P given pairs (a cascade's re-rank)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from fico_scan.captions import check_embedding, embedding_rows, resolve_vocabulary
from fico_scan.encoders import build_encoders, upgrade_legacy_state
from fico_scan.model import RUN_CHECKPOINTS, RegionWordScorer
from fico_scan.options import SCAN_OPT_DEFAULTS, check_common, merge_options, read_checkpoint
from fico_scan.xattn import CrossAttention
from torch import nn

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.checkpoints import strict_load_state_dict
from fico_registry.plugin_api.run_folders import checkpoint_in_run_folder

from .iterative import iterative_scores

# IMRAM opts.py defaults beyond SCAN's (its model_mode default "vse" is not a mode its code accepts).
IMRAM_OPT_DEFAULTS: dict[str, Any] = {
    **SCAN_OPT_DEFAULTS,
    "model_mode": "vse",
    "iteration_step": 3,
    "no_IMRAM_norm": False,
}
MODEL_MODES = ("full_IMRAM", "image_IMRAM", "text_IMRAM")


class IMRAMNet(nn.Module):
    """The parameters of IMRAM's `SCAN(nn.Module)`, with its names (saved under DataParallel's `module.`)."""

    def __init__(self, options: Mapping[str, Any], vocab_rows: int) -> None:
        super().__init__()
        self.img_enc, self.txt_enc = build_encoders(options, vocab_rows, fc_name="fc_local")
        d = int(options["embed_size"])
        self.linear_t2i = nn.Linear(2 * d, d)
        self.gate_t2i = nn.Linear(2 * d, d)
        self.linear_i2t = nn.Linear(2 * d, d)
        self.gate_i2t = nn.Linear(2 * d, d)


def check_options(options: Mapping[str, Any], *, model_name: str) -> None:
    check_common(options, model_name=model_name)
    if options["model_mode"] not in MODEL_MODES:
        raise ConfigError(
            f"{model_name}: model_mode must be one of {', '.join(MODEL_MODES)} (the original asserts 'wrong model "
            f"mode' otherwise); got {options['model_mode']!r}"
        )
    steps = options["iteration_step"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"{model_name}: iteration_step must be a positive integer, got {steps!r}")
    if int(options["num_layers"]) * (2 if options["bi_gru"] else 1) < 2:
        raise ConfigError(
            f"{model_name}: IMRAM's text encoder reads the GRU's final states ht[0] and ht[1], so it needs a "
            "bidirectional GRU (--bi_gru, as every IMRAM script) or num_layers >= 2; the original fails otherwise"
        )


class ImramEncoder(RegionWordScorer):
    """The Encoder / Scorer the registry sees for model 'imram'."""

    def __init__(self, options: dict[str, Any], vocab: Any, device: str, *, model_name: str = "imram") -> None:
        check_options(options, model_name=model_name)
        super().__init__(options, vocab, device, model_name=model_name)
        self.net = IMRAMNet(options, embedding_rows(vocab, options, model_name=model_name))

    @property
    def img_enc(self) -> nn.Module:
        return self.net.img_enc

    @property
    def txt_enc(self) -> nn.Module:
        return self.net.txt_enc

    def original_state(self) -> dict[str, torch.Tensor]:
        """checkpoint['model'] as train_gpus.py saves it: the nn.DataParallel state dict (`module.` prefix)."""
        return {f"module.{k}": v for k, v in self.net.state_dict().items()}

    def load_original(self, state: Any, *, where: str) -> None:
        """checkpoint['model'] = the DataParallel state dict (keys `module.img_enc.fc_local.weight`, ...)."""
        if isinstance(state, (list, tuple)):
            raise CheckpointError(
                f"{where}: checkpoint['model'] is a list [img_enc, txt_enc] (SCAN / VSRN layout), not IMRAM's"
            )
        if not isinstance(state, Mapping):
            raise CheckpointError(
                f"{where}: checkpoint['model'] must be IMRAM's state dict, found {type(state).__name__}"
            )
        prefixed = [str(k).startswith("module.") for k in state]
        if any(prefixed) and not all(prefixed):
            raise CheckpointError(f"{where}: some keys have the DataParallel prefix 'module.' and some do not")
        state = upgrade_legacy_state({str(k).removeprefix("module."): v for k, v in state.items()})
        if "txt_enc.embed.weight" in state:
            check_embedding(
                state["txt_enc.embed.weight"].shape[0],
                self.captions.vocab,
                self.options.get("opt_vocab_size"),
                where=where,
            )
        strict_load_state_dict(self.net, state, what=f"{where} model (keys without 'module.')")

    def finish(self) -> ImramEncoder:
        self.net.to(self.device).eval().requires_grad_(False)
        return self

    def encode_images(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"regions": self.encode_regions(batch)}

    def encode_texts(self, batch: Sequence[str]) -> dict[str, torch.Tensor]:
        words, lengths = self.encode_words(batch)
        return {"words": words, "lengths": lengths}

    def words_attend(self) -> tuple[bool, ...]:
        mode = self.options["model_mode"]
        text, image = mode in ("full_IMRAM", "text_IMRAM"), mode in ("full_IMRAM", "image_IMRAM")
        return (True,) * text + (False,) * image  # Text-IMRAM: words attend over regions; Image-IMRAM: the reverse

    def direction_scores(self, cross: CrossAttention, words_attend: bool) -> torch.Tensor:
        """The sum over iteration_step steps of Text-IMRAM (words_attend) or Image-IMRAM."""
        o, net = self.options, self.net
        linear, gate = (net.linear_t2i, net.gate_t2i) if words_attend else (net.linear_i2t, net.gate_i2t)
        steps = iterative_scores(
            cross, steps=int(o["iteration_step"]), linear=linear, gate=gate, normalize_memory=not o["no_IMRAM_norm"]
        )
        return torch.stack(steps).sum(0)

    def elements_per_pair(self, n_regions: int, n_words: int) -> int:
        # logits / attention weights per step, plus the pair-specific memory (and its update) after step 1
        mode, steps = self.options["model_mode"], int(self.options["iteration_step"])
        memory_tokens = max(n_words if mode != "image_IMRAM" else 0, n_regions if mode != "text_IMRAM" else 0)
        return 6 * n_regions * n_words + (5 * memory_tokens * 2 * self.dim if steps > 1 else 0)

    def pair_elements(self, regions: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor) -> int:
        # given pairs: logits at max_words, and every step's memory and update at the longer side, with room
        n_regions, n_words = regions.shape[1], words.shape[1]
        return 6 * n_regions * n_words + 10 * max(n_regions, n_words) * self.dim

    def score(self, images: Mapping[str, torch.Tensor], texts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.score_features(images["regions"], texts["words"], texts["lengths"])

    def score_pairs(self, images: Mapping[str, torch.Tensor], texts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(P,) scores of the pairs (image p, text p): score's diagonal, the other pairs never computed."""
        return self.score_pair_features(images["regions"], texts["words"], texts["lengths"])


def build(*, spec: Any, config: Mapping[str, Any], checkpoint: Path | str | None, device: str) -> ImramEncoder:
    if isinstance(checkpoint, str):
        raise CheckpointError(
            f"{spec.name}: IMRAM checkpoints are local .pth.tar files (no hub); {checkpoint!r} is not a file here"
        )
    opt, state = (None, None)
    if checkpoint is not None:
        # a run folder as train_gpus.py writes it: model_best.pth.tar in opt.model_name
        checkpoint = checkpoint_in_run_folder(checkpoint, RUN_CHECKPOINTS, model=spec.name)
        opt, state = read_checkpoint(Path(checkpoint), model_name="IMRAM")
    options = merge_options(config, opt, IMRAM_OPT_DEFAULTS, where=str(checkpoint or spec.name))
    vocab = resolve_vocabulary(
        options, checkpoint, file_name=f"{options['data_name']}_vocab.json", model_name=spec.name, opt=opt
    )
    encoder = ImramEncoder(options, vocab, device, model_name=spec.name)
    if checkpoint is not None:
        encoder.load_original(state, where=f"IMRAM checkpoint {checkpoint}")
    return encoder.finish()
