"""VSRN as a fico-registry CONTINUOUS model.

encode_images(regions (B, n, img_dim))  -> (B, embed_size) VSRN image embeddings
encode_texts(list of str)               -> (B, embed_size) VSRN caption embeddings

Both are l2-normalised (unless the checkpoint's opt says no_imgnorm / use_abs), and the
original evaluation compares them by inner product (`numpy.dot(im, captions.T)`), which is
the card's measure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fico_registry.errors import CheckpointError, ConfigError, DataFormatError
from fico_registry.plugin_api.captions import LOWERCASE_MODES, WORD_RULES, Vocabulary
from fico_registry.plugin_api.checkpoints import strict_load_state_dict
from fico_registry.plugin_api.run_folders import checkpoint_in_run_folder

from .captions import CaptionIds, resolve_vocabulary
from .checkpoint import architecture_from_opt, check_embedding_rows, read_checkpoint
from .modules import ImageEncoder, TextEncoder
from .plugin import ADAPTER_DEFAULTS, ARCH_DEFAULTS  # the card's defaults: the published architecture

RUN_CHECKPOINTS = ("model_best.pth.tar", "checkpoint.pth.tar")  # the best, else the last (train.py's names)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def settings_from(config: Mapping[str, Any], *, model_name: str, extra_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults overridden by `config`; an unknown key is an error (it is probably a typo)."""
    known = {*ARCH_DEFAULTS, *ADAPTER_DEFAULTS, *extra_keys}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"{model_name}: unknown config keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return {**ARCH_DEFAULTS, **ADAPTER_DEFAULTS, **config}


def _positive_int(value: Any, key: str, model_name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{model_name}: {key} must be a positive integer, got {value!r}")
    return value


def check_architecture(arch: Mapping[str, Any], *, where: str) -> None:
    for key in ("img_dim", "embed_size", "word_dim", "num_layers"):
        _positive_int(arch[key], key, where)
    name = arch["data_name"]
    if not isinstance(name, str) or not name.endswith("_precomp"):
        raise ConfigError(
            f"{where}: data_name {name!r} selects the original's full-image CNN encoder (EncoderImageFull); "
            "this adapter implements the precomputed-region encoder (data_name ending in '_precomp')"
        )
    if arch["measure"] != "cosine":
        raise ConfigError(
            f"{where}: measure {arch['measure']!r} is not supported; VSRN's published models use 'cosine' "
            "(an inner product of the embeddings)"
        )


def check_adapter(settings: Mapping[str, Any], device: str, *, model_name: str) -> None:
    if settings["tokenizer"] not in WORD_RULES:
        raise ConfigError(f"{model_name}: tokenizer must be one of {', '.join(WORD_RULES)}")
    if settings["lowercase"] not in LOWERCASE_MODES:
        raise ConfigError(f"{model_name}: lowercase must be one of {', '.join(LOWERCASE_MODES)}")
    precision = settings["precision"]
    if precision not in PRECISIONS:
        raise ConfigError(f"{model_name}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and not str(device).startswith("cuda"):
        raise ConfigError(f"{model_name}: precision 'fp16' needs a CUDA device; use 'fp32' or 'bf16' on {device}")


def regions_tensor(batch: Any, img_dim: int, *, model_name: str) -> torch.Tensor:
    """A (B, n_regions, img_dim) float batch of bottom-up-attention features."""
    x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))
    if x.ndim != 3 or x.shape[-1] != img_dim or x.shape[1] == 0:
        raise DataFormatError(
            f"{model_name}: region features must be (batch, regions, {img_dim}); got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise DataFormatError(f"{model_name}: region features must be floats, got {x.dtype}")
    return x


class VsrnNetwork:
    """One VSRN model: its image and text encoders, its vocabulary, device and precision."""

    def __init__(
        self,
        arch: Mapping[str, Any],
        settings: Mapping[str, Any],
        vocab: Vocabulary | None,
        device: str,
        *,
        model_name: str,
    ) -> None:
        self.arch = dict(arch)
        self.model_name = model_name
        self.device = torch.device(device)
        self.dtype = PRECISIONS[settings["precision"]]
        self.captions = CaptionIds(
            vocab, tokenizer=settings["tokenizer"], lowercase=settings["lowercase"], model_name=model_name
        )
        rows = len(vocab) if vocab is not None else _positive_int(settings["vocab_size"], "vocab_size", model_name)
        with torch.random.fork_rng(devices=[]):  # reproducible random init without touching the caller's RNG
            torch.manual_seed(int(settings["seed"]))
            self.img_enc = ImageEncoder(
                arch["img_dim"],
                arch["embed_size"],
                arch["data_name"],
                use_abs=arch["use_abs"],
                no_imgnorm=arch["no_imgnorm"],
            )
            self.txt_enc = TextEncoder(
                rows, arch["word_dim"], arch["embed_size"], arch["num_layers"], use_abs=arch["use_abs"]
            )
        self.dim = int(arch["embed_size"])
        self.img_dim = int(arch["img_dim"])

    def load_original(self, states: Sequence[Mapping[str, Any]], opt_vocab_size: Any, *, where: str) -> None:
        img_state, txt_state = states
        if "embed.weight" in txt_state and hasattr(txt_state["embed.weight"], "shape"):
            vocab = self.captions.vocab
            check_embedding_rows(
                int(txt_state["embed.weight"].shape[0]), len(vocab), opt_vocab_size, vocab.source, where=where
            )
        strict_load_state_dict(self.img_enc, img_state, what=f"{where} model[0] (img_enc)")
        strict_load_state_dict(self.txt_enc, txt_state, what=f"{where} model[1] (txt_enc)")

    def finish(self) -> VsrnNetwork:
        for module in (self.img_enc, self.txt_enc):
            module.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        return self

    @torch.no_grad()
    def embed_images(self, batch: Any) -> torch.Tensor:
        regions = regions_tensor(batch, self.img_dim, model_name=self.model_name)
        if regions.shape[0] == 0:
            return torch.zeros(0, self.dim, device=self.device)
        return self.img_enc(regions.to(device=self.device, dtype=self.dtype)).float()

    @torch.no_grad()
    def embed_texts(self, captions: Sequence[str]) -> torch.Tensor:
        ids, lengths = self.captions(captions)
        if len(captions) == 0:
            return torch.zeros(0, self.dim, device=self.device)
        return self.txt_enc(ids.to(self.device), lengths.to(self.device)).float()


class VsrnEncoder:
    """The Encoder the registry sees for model 'vsrn'."""

    def __init__(self, network: VsrnNetwork) -> None:
        self.network = network
        self.dim = network.dim
        self.architecture = network.arch

    def encode_images(self, batch: Any) -> torch.Tensor:
        return self.network.embed_images(batch)

    def encode_texts(self, batch: Sequence[str]) -> torch.Tensor:
        return self.network.embed_texts(batch)


def build_network(
    settings: Mapping[str, Any],
    checkpoint: Path | None,
    device: str,
    *,
    model_name: str,
    vocab: Vocabulary | None = None,
    vocab_resolved: bool = False,
    loaded: tuple[dict[str, Any], list[Mapping[str, Any]]] | None = None,
) -> VsrnNetwork:
    """One VSRN network: architecture from the checkpoint's opt (or the config), weights loaded strictly.

    `vocab_resolved=True` means `vocab` was already chosen by the caller (the ensemble shares one);
    `loaded` is the checkpoint's (opt, states) when the caller has already read it.
    """
    check_adapter(settings, device, model_name=model_name)
    opt: dict[str, Any] | None = None
    states = None
    if checkpoint is not None:
        # a run folder as train.py writes it: model_best.pth.tar in opt.logger_name (runs/runX)
        checkpoint = checkpoint_in_run_folder(checkpoint, RUN_CHECKPOINTS, model=model_name)
        opt, states = loaded if loaded is not None else read_checkpoint(Path(checkpoint))
        arch = architecture_from_opt(opt, where=str(checkpoint))
    else:
        arch = {k: settings[k] for k in ARCH_DEFAULTS}
    check_architecture(arch, where=str(checkpoint or model_name))
    if not vocab_resolved:
        vocab = resolve_vocabulary(settings, arch["data_name"], checkpoint, model_name=model_name, opt=opt)
    network = VsrnNetwork(arch, settings, vocab, device, model_name=model_name)
    if states is not None and opt is not None:
        network.load_original(states, opt.get("vocab_size"), where=f"VSRN checkpoint {checkpoint}")
    return network.finish()


def build(*, spec: Any, config: Mapping[str, Any], checkpoint: Path | str | None, device: str) -> VsrnEncoder:
    if isinstance(checkpoint, str):
        raise CheckpointError(
            f"{spec.name}: VSRN checkpoints are local .pth.tar files (no hub); {checkpoint!r} is not a file here"
        )
    settings = settings_from(config, model_name=spec.name)
    return VsrnEncoder(build_network(settings, checkpoint, device, model_name=spec.name))
