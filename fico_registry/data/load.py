"""load_dataset: a registered dataset name -> Corpus, through its plugin's loader."""

from __future__ import annotations

import os
from typing import Any

from fico_registry.data.corpus import Corpus
from fico_registry.plugin_api.registry import get_dataset_spec, resolve_callable


def load_dataset(name: str, split: str | None = None, root: str | os.PathLike | None = None, **options: Any) -> Corpus:
    """Build the Corpus of a registered dataset (`fico datasets` lists them and their files)."""
    spec = get_dataset_spec(name)
    split = split or spec.default_split
    if split not in spec.splits:
        raise ValueError(f"{name} has no split {split!r}; it has: {', '.join(spec.splits)}")
    loader = resolve_callable(spec.loader)
    return loader(root=root, split=split, **options)
