"""load_dataset: a registered dataset name -> Corpus, through its plugin's loader."""

from __future__ import annotations

import os
from typing import Any

from fico_registry.data.corpus import Corpus
from fico_registry.plugin_api.registry import get_dataset_spec, resolve_callable


def load_dataset(name: str, split: str | None = None, root: str | os.PathLike | None = None, **options: Any) -> Corpus:
    """Build the Corpus of a registered dataset (`fico datasets` lists them and their files).

    judgments=("eccv", "cxc") / "shared-objects" attaches named judgment sets (data.named_judgments);
    captions_json= locates COCO's captions_val2014.json for the COCO ones.
    """
    spec = get_dataset_spec(name)
    split = split or spec.default_split
    if split not in spec.splits:
        raise ValueError(f"{name} has no split {split!r}; it has: {', '.join(spec.splits)}")
    loader = resolve_callable(spec.loader)
    # judged relevance (ECCV Caption, CxC, synthetic graded) is attached here for every dataset
    judgments, captions_json = options.pop("judgments", None), options.pop("captions_json", None)
    corpus = loader(root=root, split=split, **options)
    if judgments:
        from fico_registry.data.named_judgments import attach_named_judgments

        corpus = attach_named_judgments(corpus, judgments, root=root, captions_json=captions_json)
    return corpus
