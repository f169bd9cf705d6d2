"""The ADV encoder the registry loads: `build(...)` -> AdvEncoder (binary codes, Hamming)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fico_registry.errors import CheckpointError, ConfigError, DTypeError, InputError, ShapeError
from fico_registry.plugin_api.checkpoints import strict_load_state_dict

from . import run_files
from .checkpoint import AdvCheckpoint, infer_architecture, read_checkpoint
from .config import BUILTIN_TINY_VOCAB, PRECISIONS, AdvConfig, check_against_checkpoint
from .hashing import to_codes
from .image_net import TransformerBinaryMapping
from .text_net import BertBinaryMapping
from .wordpiece import WordPieceTokenizer, tiny_vocab

log = logging.getLogger(__name__)


class AdvEncoder:
    """Images and captions -> {-1,+1} int8 codes of `bits` bits, compared by Hamming distance.

    `image_activations` / `text_activations` give the tanh outputs before the sign (the
    original's "codes" before evaluation.py applies torch.sign).
    """

    def __init__(
        self,
        image_net: nn.Module,
        text_net: BertBinaryMapping,
        tokenizer: WordPieceTokenizer,
        config: AdvConfig,
        device: str,
    ) -> None:
        self.image_net, self.text_net = image_net, text_net
        self.tokenizer = tokenizer
        self.config = config
        self.device = torch.device(device)
        self.dtype = getattr(torch, PRECISIONS[config.precision])
        self.bits = config.final_dims
        self.max_words = config.max_words
        for net in (image_net, text_net):
            net.requires_grad_(False)
            net.to(device=self.device, dtype=self.dtype).eval()

    # -- images ---------------------------------------------------------------------------
    def _regions(self, batch: Any) -> torch.Tensor:
        if isinstance(batch, np.ndarray):
            if not np.issubdtype(batch.dtype, np.floating):
                raise DTypeError(f"region features must be floating point, got {batch.dtype}")
            batch = torch.from_numpy(batch)
        if not isinstance(batch, torch.Tensor):
            raise InputError(
                f"ADV takes region features as an array (n, 36, {self.config.img_dim}), got {type(batch).__name__}"
            )
        if not batch.is_floating_point():
            raise DTypeError(f"region features must be floating point, got {batch.dtype}")
        if batch.ndim != 3 or batch.shape[-1] != self.config.img_dim or batch.shape[1] == 0:
            raise ShapeError(
                f"ADV takes region features of shape (n, regions, {self.config.img_dim}), got {tuple(batch.shape)}"
            )
        return batch.to(device=self.device, dtype=self.dtype)

    def _image_batch(self, batch: Any) -> torch.Tensor:
        return self._regions(batch)

    @torch.inference_mode()
    def image_activations(self, batch: Any) -> torch.Tensor:
        return self.image_net(self._image_batch(batch))

    def encode_images(self, batch: Any) -> torch.Tensor:
        return to_codes(self.image_activations(batch))

    # -- captions -------------------------------------------------------------------------
    def tokenize(self, texts: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask), each (n, max_words) int64 on the model's device."""
        if isinstance(texts, str) or not isinstance(texts, list | tuple):
            raise InputError(f"ADV takes a list of caption strings, got {type(texts).__name__}")
        ids, mask = self.tokenizer.encode_batch(texts, self.max_words)
        as_tensor = lambda rows: torch.tensor(rows, dtype=torch.long).reshape(len(texts), self.max_words)  # noqa: E731
        return as_tensor(ids).to(self.device), as_tensor(mask).to(self.device)

    @torch.inference_mode()
    def text_activations(self, texts: Any) -> torch.Tensor:
        ids, mask = self.tokenize(texts)
        return self.text_net(ids, mask)

    def encode_texts(self, texts: Any) -> torch.Tensor:
        return to_codes(self.text_activations(texts))


# -- building ---------------------------------------------------------------------------------
def resolve_vocab(cfg: AdvConfig, ckpt: AdvCheckpoint | None) -> WordPieceTokenizer:
    """config vocab_file, else vocab.txt beside the checkpoint, else the run's opt.vocab_file (run_files)."""
    if cfg.vocab_file == BUILTIN_TINY_VOCAB:
        tokenizer = WordPieceTokenizer(tiny_vocab(), do_lower_case=cfg.do_lower_case)
    else:
        if cfg.vocab_file is not None:
            found: Path | None = Path(cfg.vocab_file).expanduser()
            if not found.is_file():
                raise ConfigError(f"ADV config vocab_file {found} is not a file (BERT-base uncased vocab.txt)")
        elif ckpt is not None:
            wanted = run_files.bert_file(ckpt.opt, "vocab_file", "vocab.txt")
            found = run_files.locate(ckpt, wanted)
            if found is None:
                raise run_files.missing(
                    ckpt, wanted, config_key="vocab_file", why="BERT-base uncased's WordPiece vocabulary (30522 lines)"
                )
        else:
            raise ConfigError(
                "ADV tokenises captions with the BERT-base uncased WordPiece vocabulary: put vocab.txt next to "
                "the checkpoint or pass config={'vocab_file': '.../uncased_L-12_H-768_A-12/vocab.txt'}"
            )
        tokenizer = WordPieceTokenizer.from_file(found, do_lower_case=cfg.do_lower_case)
    expected = cfg.bert_config["vocab_size"]
    if len(tokenizer) != expected:
        raise ConfigError(
            f"the vocabulary has {len(tokenizer)} entries but BERT's word embeddings have {expected} rows: "
            "use the vocab.txt of the BERT the model was trained from (BERT-base uncased: 30522)"
        )
    return tokenizer


def load_states(image_net: nn.Module, text_net: nn.Module, ckpt: AdvCheckpoint) -> None:
    strict_load_state_dict(image_net, ckpt.image_state, what=f"{ckpt.path} model[0] (img_enc)")
    strict_load_state_dict(text_net, ckpt.text_state, what=f"{ckpt.path} model[1] (txt_enc)")


def check_run(cfg: AdvConfig, ckpt: AdvCheckpoint, facts: Mapping[str, Any]) -> AdvConfig:
    """The config with the run's own JSON architecture files applied, checked against the tensors."""
    cfg, not_found = run_files.with_run_configs(cfg, ckpt)
    try:
        check_against_checkpoint(cfg, facts, ckpt.opt, str(ckpt.path))
    except CheckpointError as exc:
        raise run_files.explain_mismatch(exc, not_found, ckpt) from None
    return cfg


def read_and_check(checkpoint: Any, cfg: AdvConfig) -> AdvCheckpoint | None:
    if checkpoint is None:
        return None
    if isinstance(checkpoint, str) and not Path(checkpoint).exists():
        raise CheckpointError(
            f"ADV has no hub weights ({checkpoint!r}): pass the path of a model_best.pth.tar saved by the "
            "original train_reranking.py"
        )
    ckpt = read_checkpoint(Path(checkpoint))
    wants_screen = cfg.image_backbone == "resnet50"
    if ckpt.is_screen_model != wants_screen:
        kind = "screen (ResNet-50 'backbone.*')" if ckpt.is_screen_model else "re-rank (region transformer)"
        other = "adv-screen" if ckpt.is_screen_model else "adv-2048 / adv-64"
        raise CheckpointError(f"{ckpt.path} holds an ADV {kind} model: load it as {other}")
    return ckpt


def build(*, spec: Any = None, config: dict[str, Any], checkpoint: Any = None, device: str = "cpu") -> AdvEncoder:
    cfg = AdvConfig.from_dict(config)
    if cfg.image_backbone != "regions":
        raise ConfigError("fico_adv.model:build builds the region models; the screen model is fico_adv.screen:build")
    cfg, image_net, text_net, tokenizer = build_networks(
        cfg, checkpoint, infer_architecture, lambda c: TransformerBinaryMapping(c.img_dim, c.final_dims, c.trans_shape)
    )
    return AdvEncoder(image_net, text_net, tokenizer, cfg, device)


def build_networks(
    cfg: AdvConfig,
    checkpoint: Any,
    infer: Callable[[AdvCheckpoint], Mapping[str, Any]],
    image_net: Callable[[AdvConfig], nn.Module],
) -> tuple[AdvConfig, nn.Module, nn.Module, WordPieceTokenizer]:
    """The config checked against the checkpoint (its architecture read by `infer`), both networks
    (image side built by `image_net`, then the BERT text side: random init in that order) holding the
    checkpoint's weights when there is one, and the tokenizer."""
    ckpt = read_and_check(checkpoint, cfg)
    if ckpt is not None:
        cfg = check_run(cfg, ckpt, infer(ckpt))
    tokenizer = resolve_vocab(cfg, ckpt)
    image = image_net(cfg)
    text = BertBinaryMapping(cfg.bert_shape, cfg.final_dims, cfg.cnn_channels)
    if ckpt is not None:
        load_states(image, text, ckpt)
    return cfg, image, text, tokenizer
