"""Extended COCO positives from the `eccv-caption` package (NAVER, MIT): ECCV Caption, CxC, COCO.

ECCV Caption (Chun et al., ECCV 2022) adds machine-proposed, human-verified positives to the
COCO 5K test split (about 8.5x positive images per caption, 3.6x captions per image); CxC
(Parekh et al., EACL 2021) adds human similarity judgments. The package ships both, and COCO's
original positives, as JSON keyed by COCO image ids and COCO caption annotation ids. This module
aligns them to a corpus: rows = the given image ids, columns = the given caption annotation ids.

Install with `pip install eccv-caption` (or the `judgments` extra). Karpathy's JSON has no caption
annotation ids; `fico_registry.data.karpathy` matches them through COCO's captions_val2014.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

from fico_registry.data.judgments import Judgments, JudgmentSet
from fico_registry.errors import ConfigError, OptionError

WHICH = ("eccv", "cxc", "coco")
_FILE_PREFIX = {"eccv": "eccv", "cxc": "cxc", "coco": "original"}


def _read(name: str) -> dict[int, list[int]]:
    try:
        folder = resources.files("eccv_caption") / "data"
    except ModuleNotFoundError:
        raise ConfigError(
            "ECCV Caption / CxC judgments need the `eccv-caption` package: pip install eccv-caption "
            "(or pip install 'fico-registry[judgments]')"
        ) from None
    data = json.loads((folder / name).read_text(encoding="utf-8"))
    return {int(k): [int(v) for v in values] for k, values in data.items()}


def eccv_test_ids() -> np.ndarray:
    """The 25,000 COCO caption annotation ids of the 5K test split the package's judgments cover."""
    try:
        folder = resources.files("eccv_caption") / "data"
    except ModuleNotFoundError:
        raise ConfigError("the COCO test ids ship with the `eccv-caption` package: pip install eccv-caption") from None
    with resources.as_file(folder / "coco_test_ids.npy") as path:
        return np.load(path, allow_pickle=False)


def eccv_caption_judgments(
    image_ids: Sequence[Any] | np.ndarray, caption_ids: Sequence[Any] | np.ndarray, which: str = "eccv"
) -> JudgmentSet:
    """The `which` positives aligned to a corpus: rows = COCO image ids, columns = caption annotation ids.

    Judged items outside the given ids are dropped (the JudgmentSet's source says how many);
    queries without positives are left out of judged metrics, as ECCV Caption itself does (it
    judges 1,261 images and 1,332 captions of the 5K test split).
    """
    if which not in WHICH:
        raise OptionError(f"which must be one of {', '.join(WHICH)}; got {which!r}")
    prefix = _FILE_PREFIX[which]
    image_ids, caption_ids = np.asarray(image_ids).astype(np.int64), np.asarray(caption_ids).astype(np.int64)
    # negative ids mark captions without a COCO annotation id (never judged, still candidates)
    rows = {int(x): i for i, x in enumerate(image_ids.tolist()) if x >= 0}
    cols = {int(x): i for i, x in enumerate(caption_ids.tolist()) if x >= 0}
    sizes = {"i2t": (len(image_ids), len(caption_ids)), "t2i": (len(caption_ids), len(image_ids))}
    directions: dict[str, Judgments] = {}
    dropped = 0
    for direction, queries, candidates in (("i2t", rows, cols), ("t2i", cols, rows)):
        judged = _read(f"{prefix}_{'image_to_caption' if direction == 'i2t' else 'caption_to_image'}.json")
        q: list[int] = []
        c: list[int] = []
        for query_id, positives in judged.items():
            qi = queries.get(query_id)
            if qi is None:
                dropped += len(positives)
                continue
            for positive in positives:
                ci = candidates.get(positive)
                if ci is None:
                    dropped += 1
                    continue
                q.append(qi)
                c.append(ci)
        directions[direction] = Judgments.from_pairs(q, c, *sizes[direction])
    source = f"eccv-caption package, {prefix}_*.json"
    if dropped:
        source += f" ({dropped} judged pairs outside this corpus dropped)"
    return JudgmentSet(which, directions["i2t"], directions["t2i"], source=source)
