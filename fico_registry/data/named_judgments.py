"""Judgments attached by name when a dataset is loaded: load_dataset(..., judgments=("eccv", "cxc")).

Known names:
  eccv, cxc, coco     extended COCO positives from the eccv-caption package (COCO corpora only);
                      Karpathy sentences are matched to COCO caption annotation ids through COCO's
                      captions_val2014.json: root/annotations/captions_val2014.json by default,
                      or captions_json=PATH.
  shared-objects      the synthetic corpus' graded relevance (grade = shared scene objects).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fico_registry.data.corpus import Corpus
from fico_registry.errors import MissingInputError, OptionError

COCO_SETS = ("eccv", "cxc", "coco")
SYNTHETIC_SETS = ("shared-objects",)
KNOWN = COCO_SETS + SYNTHETIC_SETS


def parse_names(judgments: str | Sequence[str] | None) -> list[str]:
    """ "eccv,cxc" or ("eccv", "cxc") -> ["eccv", "cxc"]; unknown names are an OptionError."""
    if judgments is None:
        return []
    names = (
        [x.strip() for x in judgments.split(",")] if isinstance(judgments, str) else [str(x).strip() for x in judgments]
    )
    names = [x for x in names if x]
    for name in names:
        if name not in KNOWN:
            raise OptionError(f"unknown judgments {name!r}; known: {', '.join(KNOWN)} (or load a qrels file)")
    return list(dict.fromkeys(names))


def default_captions_json(root: str | os.PathLike | None) -> Path | None:
    return None if root is None else Path(root) / "annotations" / "captions_val2014.json"


def attach_named_judgments(
    corpus: Corpus,
    judgments: str | Sequence[str] | None,
    *,
    root: str | os.PathLike | None = None,
    captions_json: str | os.PathLike | None = None,
) -> Corpus:
    """The corpus with the named judgment sets attached (corpus.judgments[name])."""
    names = parse_names(judgments)
    coco = [n for n in names if n in COCO_SETS]
    if coco:
        corpus = _attach_coco(corpus, coco, root, captions_json)
    if "shared-objects" in names:
        from fico_registry.data.synthetic import graded_judgments

        if corpus.meta.get("source") != "synthetic":
            raise OptionError(f"judgments 'shared-objects' exist only for the synthetic corpus, not {corpus.name!r}")
        corpus = corpus.with_judgments("shared-objects", graded_judgments(corpus))
    return corpus


def _attach_coco(corpus: Corpus, names: list[str], root: Any, captions_json: Any) -> Corpus:
    from fico_registry.data.coco_captions import coco_caption_ids
    from fico_registry.data.eccv_caption import eccv_caption_judgments

    if corpus.meta.get("id_kind") != "cocoid":
        raise OptionError(
            f"judgments {', '.join(names)} are keyed by COCO ids; {corpus.name!r} is not a COCO corpus "
            "(use --judgments NAME:DIR=qrels.tsv for other corpora)"
        )
    path = Path(captions_json) if captions_json is not None else default_captions_json(root)
    if path is None or not path.is_file():
        where = f" (looked for {path})" if path is not None else ""
        raise MissingInputError(
            f"ECCV Caption / CxC judgments need COCO's captions_val2014.json to map Karpathy sentences to COCO "
            f"caption ids{where}: put it at ROOT/annotations/captions_val2014.json or pass captions_json=PATH "
            "(--captions-json on the command line)"
        )
    caption_ids = coco_caption_ids(corpus, path)
    for name in names:
        corpus = corpus.with_judgments(name, eccv_caption_judgments(list(corpus.image_ids), caption_ids, name))
    return corpus
