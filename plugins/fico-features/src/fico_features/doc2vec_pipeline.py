"""The `doc2vec` pipeline: captions -> (n, 300) Doc2Vec vectors, deterministic.

gensim's infer_vector is not reproducible: it starts from a vector seeded with Python's hash()
of the text (randomised per process unless PYTHONHASHSEED is set) and draws negative samples
and down-sampling from the model's shared RandomState, so a caption's vector depends on the
process and on every caption inferred before it. `infer` below runs the same gensim training
kernels, but starts from a vector seeded by sha256(seed, tokens) and gives every caption a
fresh RandomState(seed): the same text gets the identical vector in any batch, order or process.

Models come from (1) config "model": a folder written by `save` (no pickles are read), or
(2) `prepare(corpus)`, which trains on the corpus's dataset's training split (config
"train_split"), or on the corpus's own captions when that split cannot be loaded (logged), and
caches the result under $FICO_HOME/features/doc2vec/. Training is reproducible with
train_workers=1 (gensim's threads interleave non-deterministically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fico_registry.errors import ConfigError, DataFormatError
from fico_registry.plugin_api import fico_home

from .doc2vec_files import TRAIN_PARAMS, load_model, model_params, save_model
from .text_tokens import TOKENIZER_VERSION, tokenize

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = "doc2vec/v1"
INFER_KEYS = ("infer_alpha", "infer_min_alpha", "infer_epochs", "seed")


def stable_seed(seed: int, tokens: Sequence[str]) -> int:
    digest = hashlib.sha256(json.dumps([int(seed), list(tokens)]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def infer(model: Any, tokens: list[str], *, alpha: float, min_alpha: float, epochs: int, seed: int) -> np.ndarray:
    """gensim's Doc2Vec.infer_vector with a reproducible start vector and random stream."""
    from gensim import matutils
    from gensim.models.doc2vec_inner import train_document_dbow, train_document_dm, train_document_dm_concat

    size = model.dv.vector_size
    start = np.random.default_rng(stable_seed(seed, tokens)).random(size, dtype=np.float32)
    vector = ((start - 0.5) / size).reshape(1, size)  # gensim's scale for a fresh document vector
    lockf = np.ones(1, dtype=np.float32)
    work = np.zeros(model.layer1_size, dtype=np.float32)
    neu1 = None if model.sg else matutils.zeros_aligned(model.layer1_size, dtype=np.float32)
    model.random = np.random.RandomState(seed)  # negative samples / down-sampling: same draws every call
    step = (alpha - min_alpha) / max(epochs - 1, 1)
    for _ in range(epochs):
        common = {"learn_words": False, "learn_hidden": False, "doctag_vectors": vector, "doctags_lockf": lockf}
        if model.sg:
            train_document_dbow(model, tokens, [0], alpha, work, **common)
        elif model.dm_concat:
            train_document_dm_concat(model, tokens, [0], alpha, work, neu1, **common)
        else:
            train_document_dm(model, tokens, [0], alpha, work, neu1, **common)
        alpha -= step
    return vector[0].copy()


class Doc2VecPipeline:
    """compute(captions) -> (n, vector_size) float32; fingerprint() names model + inference."""

    def __init__(self, config: Mapping[str, Any], device: str = "cpu") -> None:
        self.config = dict(config)
        self.device = torch.device(device)  # inference is CPU (gensim); outputs are moved here
        self.dim = int(self.config.get("vector_size", 300))
        self.model: Any = None
        self.model_sha256: str | None = None
        self.model_path: Path | None = None
        if self.config.get("model") is not None:
            self.load(self._resolve_model(self.config["model"]))

    # -- models ----------------------------------------------------------------------------------
    @staticmethod
    def _resolve_model(value: str) -> Path:
        path = Path(value).expanduser()
        for candidate in (path, fico_home() / "features" / "doc2vec" / path.name):
            if (candidate / "doc2vec.json").is_file():
                return candidate
        raise ConfigError(
            f"doc2vec: model {value!r} not found (looked for {path}/doc2vec.json and in "
            f"{fico_home() / 'features' / 'doc2vec'}); train one with Doc2VecPipeline.train(captions, save_to=...)"
        )

    def load(self, folder: str | os.PathLike) -> None:
        model, header = load_model(folder)
        if header.get("tokenizer") != TOKENIZER_VERSION:
            raise DataFormatError(
                f"{folder}: trained with tokenizer {header.get('tokenizer')!r}, this version uses {TOKENIZER_VERSION!r}"
            )
        if model.dv.vector_size != self.dim:
            raise ConfigError(f"{folder}: vector_size {model.dv.vector_size}, but the config says {self.dim}")
        self.model, self.model_sha256, self.model_path = model, header["content_sha256"], Path(folder)

    def train(self, captions: Sequence[str], save_to: str | os.PathLike | None = None) -> str:
        """Train on `captions` (one document each) with the config's parameters; returns the content sha256."""
        from gensim.models.doc2vec import Doc2Vec, TaggedDocument

        documents = [TaggedDocument(tokenize(text), [i]) for i, text in enumerate(captions)]
        if not documents:
            raise DataFormatError("doc2vec: no captions to train on")
        params = {k: self.config[k] for k in TRAIN_PARAMS if k in self.config}
        model = Doc2Vec(workers=int(self.config.get("train_workers", 1)), **params)
        model.build_vocab(documents)
        if len(model.wv) == 0:
            raise DataFormatError(
                f"doc2vec: no word occurs min_count={model.min_count} times in {len(documents)} captions; "
                "lower min_count"
            )
        model.train(documents, total_examples=len(documents), epochs=model.epochs)
        provenance = {"n_captions": len(documents), "captions_sha256": _captions_sha256(captions)}
        if save_to is not None:
            sha = save_model(model, save_to, tokenizer=TOKENIZER_VERSION, provenance=provenance)
            self.load(save_to)  # use exactly what was written, so a reload gives the same vectors
            return sha
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:  # round-trip through the file format all the same
            sha = save_model(model, Path(tmp) / "model", tokenizer=TOKENIZER_VERSION, provenance=provenance)
            self.load(Path(tmp) / "model")
        self.model_path = None
        return sha

    def save(self, folder: str | os.PathLike) -> str:
        if self.model is None:
            raise ConfigError("doc2vec: nothing to save; train or load a model first")
        return save_model(
            self.model, folder, tokenizer=TOKENIZER_VERSION, provenance={"saved_from": str(self.model_path)}
        )

    def prepare(self, corpus: Any) -> None:
        """Called by the evaluator before compute(): train (or reuse a cached) model if none is loaded."""
        if self.model is not None:
            return
        captions, source = self._training_captions(corpus)
        self.fit(captions, source=source)

    def fit(self, captions: Sequence[str], *, source: str = "the given captions") -> None:
        """Train on `captions`, or load the model already trained on exactly these captions and
        parameters (cached under $FICO_HOME/features/doc2vec/ unless cache_trained is false)."""
        if not self.config.get("cache_trained", True):
            self.train(captions)
            return
        key = hashlib.sha256(
            json.dumps(
                {
                    "params": {k: self.config.get(k) for k in TRAIN_PARAMS},
                    "tokenizer": TOKENIZER_VERSION,
                    "captions": _captions_sha256(captions),
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()[:16]
        folder = fico_home() / "features" / "doc2vec" / f"trained-{key}"
        if (folder / "doc2vec.json").is_file():
            self.load(folder)
            return
        log.info("doc2vec: training on %d captions of %s (cached in %s)", len(captions), source, folder)
        self.train(captions, save_to=folder)

    def _training_captions(self, corpus: Any) -> tuple[list[str], str]:
        split = self.config.get("train_split")
        here = f"{corpus.name}/{corpus.split}"
        if split is None or corpus.split == split:
            return list(corpus.captions), here
        try:
            from fico_registry.plugin_api import load_dataset

            train = load_dataset(corpus.name, split=split, root=corpus.root)
            return list(train.captions), f"{corpus.name}/{split}"
        except Exception as exc:  # any failure to find the training split falls back, loudly
            log.warning(
                "doc2vec: cannot load %s/%s to train on (%s); training on the evaluated captions of %s instead "
                "(transductive). Pass a trained model (config 'model') for a clean protocol.",
                corpus.name,
                split,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                here,
            )
            return list(corpus.captions), here

    # -- the pipeline protocol -------------------------------------------------------------------
    def compute(self, items: Sequence[str]) -> torch.Tensor:
        if self.model is None:
            raise ConfigError(
                "doc2vec: no model: set config 'model' to a folder saved by this plugin, call train(captions), "
                "or let the evaluator call prepare(corpus) first"
            )
        alpha = float(self.config.get("infer_alpha", 0.01))
        min_alpha = float(self.config.get("infer_min_alpha", 0.0001))
        epochs = int(self.config.get("infer_epochs", 200))
        seed = int(self.config.get("seed", 0))
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for row, text in enumerate(items):
            out[row] = infer(self.model, tokenize(text), alpha=alpha, min_alpha=min_alpha, epochs=epochs, seed=seed)
        return torch.from_numpy(out).to(self.device)

    def fingerprint(self) -> str:
        if self.model_sha256 is None:
            raise ConfigError("doc2vec: fingerprint() needs a model; train, load or prepare(corpus) first")
        infer_settings = {k: self.config.get(k) for k in INFER_KEYS}
        digest = hashlib.sha256(json.dumps(infer_settings, sort_keys=True).encode()).hexdigest()[:12]
        return f"{FINGERPRINT_VERSION}:{TOKENIZER_VERSION}:model-sha256:{self.model_sha256}:infer-{digest}"

    @property
    def params(self) -> dict[str, Any]:
        return model_params(self.model) if self.model is not None else {}


def _captions_sha256(captions: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in captions:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def build(*, config: Mapping[str, Any], device: str = "cpu") -> Doc2VecPipeline:
    return Doc2VecPipeline(config, device=device)
