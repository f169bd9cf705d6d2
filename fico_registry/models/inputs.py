"""Give each model the inputs its card declares: pixels, captions, attached features, pipelines."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fico_registry.data.corpus import Corpus
from fico_registry.errors import MissingInputError
from fico_registry.plugin_api.cards import Input


class InputSource(Protocol):
    """Items of one side of a corpus, in the form a model's encoder takes them."""

    name: str

    @property
    def n(self) -> int:
        """Number of items (a read-only property in every source)."""
        ...

    def batch(self, start: int, stop: int) -> Any: ...

    def fingerprint(self) -> str:
        """Identifies the input content (part of the embedding-cache key)."""
        ...


@dataclass
class CaptionSource:
    corpus: Corpus
    name: str = Input.TEXT

    @property
    def n(self) -> int:
        return self.corpus.n_captions

    def batch(self, start: int, stop: int) -> list[str]:
        return [self.corpus.captions[j] for j in range(start, stop)]

    def fingerprint(self) -> str:
        return self.corpus.content_hash  # covers every caption


@dataclass
class PixelSource:
    """Decoded images (PIL), decoded in threads; stacked tensors if the encoder preprocesses."""

    corpus: Corpus
    preprocess: Any = None  # encoder.preprocess_image, if it has one
    workers: int = min(8, os.cpu_count() or 1)
    name: str = Input.PIXELS

    @property
    def n(self) -> int:
        return self.corpus.n_images

    def batch(self, start: int, stop: int) -> Any:
        def load(i: int) -> Any:
            image = self.corpus.load_image(i)
            return image if self.preprocess is None else self.preprocess(image)

        indices = range(start, stop)
        if self.workers > 1 and stop - start > 1:
            with ThreadPoolExecutor(self.workers) as pool:  # PIL decodes without the GIL
                items = list(pool.map(load, indices))
        else:
            items = [load(i) for i in indices]
        if self.preprocess is None:
            return items
        import torch

        return torch.stack(items)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.corpus.content_hash.encode())
        for i in range(self.corpus.n_images):  # cheap: file sizes and times, not pixels
            path = self.corpus.image_path(i)
            try:
                stat = path.stat()
                digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
            except OSError:
                digest.update(f"{path}:missing\0".encode())
        return digest.hexdigest()


@dataclass
class ArraySource:
    """Rows of a feature array (attached file or computed pipeline), as float32 numpy."""

    name: str
    rows: Any  # callable(indices) -> array
    n: int
    identity: str

    def batch(self, start: int, stop: int) -> np.ndarray:
        return np.ascontiguousarray(self.rows(np.arange(start, stop)), dtype=np.float32)

    def fingerprint(self) -> str:
        return self.identity


def input_source(
    model: Any,
    corpus: Corpus,
    side: str,
    *,
    device: str = "cpu",
    cache: Any = None,
    progress: bool | None = None,
    pipeline_config: str = "default",
) -> InputSource:
    """The source of `side` ("image" or "text") inputs for `model` on `corpus`."""
    spec = model.spec
    name = spec.image_input if side == "image" else spec.text_input
    count = corpus.n_images if side == "image" else corpus.n_captions
    if name == Input.PIXELS and side == "image":
        if corpus.image_paths is None:
            raise MissingInputError(
                f"{spec.name} needs image files, but {corpus.name}/{corpus.split} has none (features only)"
            )
        return PixelSource(corpus, preprocess=getattr(model.encoder, "preprocess_image", None))
    if name == Input.TEXT and side == "text":
        return CaptionSource(corpus)
    ref = corpus.features.get(name)
    if ref is not None:
        if ref.count != count:
            raise MissingInputError(f"{name} features have {ref.count} rows for {count} {side}s of {corpus.name}")
        return ArraySource(name, ref.rows, count, ref.fingerprint())
    from fico_registry.plugin_api.registry import get_registry

    pipeline = get_registry().feature_pipeline(name)
    if pipeline is not None:
        from fico_registry.models.pipelines import pipeline_features

        # a trained model may carry the exact pipeline configs of its run (ucch, dadh: inputs.json)
        own = (getattr(model.encoder, "input_pipelines", None) or {}).get(name)
        config = own if own is not None else pipeline_config
        array, identity = pipeline_features(
            pipeline, corpus, side, device=device, cache=cache, progress=progress, config=config
        )
        return ArraySource(name, lambda idx, a=array: a[idx], count, identity)
    attached = ", ".join(sorted(corpus.features)) or "none"
    raise MissingInputError(
        f"{spec.name} needs {side} input {name!r}; {corpus.name}/{corpus.split} has no such feature (attached: "
        f"{attached}) and no installed feature pipeline computes it. Attach precomputed features with "
        f"corpus.with_features({name!r}, 'file.npy', modality={side!r}) or install the plugin that provides it."
    )
