"""Match Karpathy-split sentences to COCO caption annotation ids (captions_val2014.json).

Extended COCO judgments (ECCV Caption, CxC) are keyed by COCO's caption annotation ids, which
Karpathy's dataset_coco.json does not carry (it numbers sentences with its own `sentid`). Both
files hold the same caption text for the same COCO image, so each Karpathy sentence is matched to
an annotation of its image by text (whitespace and case normalised, a trailing period ignored),
each annotation used once. The user supplies COCO's captions_val2014.json (and, for the train
split, captions_train2014.json); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fico_registry.data.corpus import Corpus
from fico_registry.errors import DataFormatError, MissingInputError

_SPACES = re.compile(r"\s+")


def _normalise(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower().rstrip(" .")


def _annotations(paths: Iterable[str | os.PathLike]) -> dict[int, list[tuple[int, str]]]:
    by_image: dict[int, list[tuple[int, str]]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(
                f"{path} not found: COCO's caption annotations (captions_val2014.json from the COCO 2014 "
                "annotations archive) are needed to match Karpathy sentences to COCO caption ids"
            )
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            items = doc["annotations"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataFormatError(f"{path}: expected a COCO captions file with an 'annotations' list") from None
        for ann in items:
            try:
                by_image.setdefault(int(ann["image_id"]), []).append((int(ann["id"]), _normalise(str(ann["caption"]))))
            except (KeyError, TypeError, ValueError):
                raise DataFormatError(f"{path}: an annotation lacks image_id / id / caption") from None
    return by_image


def coco_caption_ids(corpus: Corpus, captions_json: str | os.PathLike | Iterable[str | os.PathLike]) -> np.ndarray:
    """(n_captions,) COCO caption annotation id of each corpus caption, -1 where none matches.

    The corpus' image ids must be COCO image ids (Karpathy COCO corpora: meta id_kind == "cocoid").
    """
    if corpus.meta.get("id_kind") != "cocoid":
        raise DataFormatError(
            f"{corpus.name}: image ids are not COCO image ids; caption ids can only be matched for COCO"
        )
    paths = [captions_json] if isinstance(captions_json, str | os.PathLike) else list(captions_json)
    by_image = _annotations(paths)
    ids = np.full(corpus.n_captions, -1, dtype=np.int64)
    images = [int(x) for x in corpus.image_ids]
    for caption, image in enumerate(np.asarray(corpus.caption_to_image).tolist()):
        pool = by_image.get(images[image])
        if not pool:
            continue
        text = _normalise(corpus.captions[caption])
        for slot, (ann_id, ann_text) in enumerate(pool):
            if ann_text == text:
                ids[caption] = ann_id
                pool.pop(slot)  # each annotation matches one sentence
                break
    return ids
