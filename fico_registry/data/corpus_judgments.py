"""Judgments a Corpus carries (Corpus.judgments): checks, content hash, files, subsets and copies.

Saved inside the corpus folder as judgments/<name>.<direction>.npz (the CSR arrays, no pickle)
and listed in corpus.json; they enter the content hash only when present, so the hash of a corpus
without judgments is what it always was.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.data.judgments import DIRECTIONS, Judgments, JudgmentSet
from fico_registry.errors import DataFormatError, ShapeError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_corpus_judgments(judgments: Mapping[str, Any], n_images: int, n_captions: int) -> dict[str, JudgmentSet]:
    """Every set is a JudgmentSet under a file-safe name, shaped (images x captions) / (captions x images)."""
    out: dict[str, JudgmentSet] = {}
    for name, js in judgments.items():
        if not isinstance(js, JudgmentSet):
            raise DataFormatError(f"corpus judgments[{name!r}] must be a JudgmentSet, got {type(js).__name__}")
        if not _NAME.match(str(name)):
            raise DataFormatError(f"judgment set name {name!r}: use letters, digits, '_', '-' or '.' (it names files)")
        shapes = {"i2t": (n_images, n_captions), "t2i": (n_captions, n_images)}
        for direction in DIRECTIONS:
            judged = js.direction(direction)
            if judged is not None:
                judged.check_shape(*shapes[direction], f"corpus judgments {name!r} ({direction})")
        out[str(name)] = js
    return out


def hash_judgments(digest: Any, judgments: Mapping[str, JudgmentSet]) -> None:
    """Add the judgments to a content-hash digest (nothing when there are none)."""
    for name in sorted(judgments):
        js = judgments[name]
        digest.update(b"\2judgments:" + name.encode() + b"\0")
        for direction in DIRECTIONS:
            judged = js.direction(direction)
            digest.update(direction.encode() + (b"-" if judged is None else b"+"))
            if judged is not None:
                for array in (judged.indptr.astype("<i8"), judged.indices.astype("<i8"), judged.grades.astype("<f8")):
                    digest.update(array.tobytes())


def save_judgments(folder: Path, judgments: Mapping[str, JudgmentSet]) -> dict[str, Any]:
    """Write judgments/<name>.<direction>.npz; return the corpus.json entry."""
    doc: dict[str, Any] = {}
    for name, js in judgments.items():
        (folder / "judgments").mkdir(exist_ok=True)
        present = []
        for direction in DIRECTIONS:
            judged = js.direction(direction)
            if judged is None:
                continue
            present.append(direction)
            target = folder / "judgments" / f"{name}.{direction}.npz"
            tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}.npz")
            np.savez(
                tmp, indptr=judged.indptr, indices=judged.indices, grades=judged.grades,
                shape=np.array([judged.n_queries, judged.n_candidates], dtype=np.int64),
            )  # fmt: skip
            tmp.replace(target)
        doc[name] = {"source": js.source, "directions": present}
    return doc


def load_judgments(folder: Path, doc: Mapping[str, Any]) -> dict[str, JudgmentSet]:
    out: dict[str, JudgmentSet] = {}
    for name, entry in doc.items():
        parts: dict[str, Judgments | None] = {"i2t": None, "t2i": None}
        for direction in entry.get("directions", []):
            path = folder / "judgments" / f"{name}.{direction}.npz"
            try:
                with np.load(path, allow_pickle=False) as data:
                    n_q, n_c = (int(x) for x in data["shape"])
                    parts[direction] = Judgments(n_q, n_c, data["indptr"], data["indices"], data["grades"])
            except FileNotFoundError:
                raise DataFormatError(
                    f"{folder}: corpus.json lists judgments {name!r} ({direction}) but {path} is missing"
                ) from None
            except (KeyError, ValueError, ShapeError) as err:
                raise DataFormatError(f"{path} is not a judgments file written by Corpus.save ({err})") from None
        out[name] = JudgmentSet(name, parts["i2t"], parts["t2i"], source=entry.get("source", ""))
    return out


def subset_judgments(
    judgments: Mapping[str, JudgmentSet], keep_images: int, n_images: int, captions: np.ndarray, n_captions: int
) -> dict[str, JudgmentSet]:
    """The judgments among the first keep_images of n_images images and the kept captions (old indices)."""
    image_map = np.full(n_images, -1, dtype=np.int64)
    image_map[:keep_images] = np.arange(keep_images)
    caption_map = np.full(n_captions, -1, dtype=np.int64)
    caption_map[captions] = np.arange(len(captions))

    def subset(direction: str, judged: Judgments) -> Judgments:
        q_map, c_map = (image_map, caption_map) if direction == "i2t" else (caption_map, image_map)
        q = q_map[np.repeat(np.arange(judged.n_queries), judged.counts)]
        c = c_map[judged.indices]
        keep = (q >= 0) & (c >= 0)
        shape = (keep_images, len(captions)) if direction == "i2t" else (len(captions), keep_images)
        return Judgments.from_pairs(q[keep], c[keep], *shape, judged.grades[keep])

    return _map_directions(judgments, subset, lambda source: source)


def tile_judgments(judgments: Mapping[str, JudgmentSet], factor: int) -> dict[str, JudgmentSet]:
    """Judgments of a corpus repeated `factor` times: each copy judges within its own copy only,
    as the instance map of a duplicated corpus does (copy k's captions belong to copy k's images)."""

    def tile(direction: str, judged: Judgments) -> Judgments:
        q = np.repeat(np.arange(judged.n_queries), judged.counts)
        copies = np.arange(factor)[:, None]
        return Judgments.from_pairs(
            (q[None, :] + copies * judged.n_queries).reshape(-1),
            (judged.indices[None, :] + copies * judged.n_candidates).reshape(-1),
            judged.n_queries * factor, judged.n_candidates * factor, np.tile(judged.grades, factor),
        )  # fmt: skip

    return _map_directions(judgments, tile, lambda source: f"{source} (x{factor} copies)".strip())


def _map_directions(
    judgments: Mapping[str, JudgmentSet],
    transform: Callable[[str, Judgments], Judgments],
    new_source: Callable[[str], str],
) -> dict[str, JudgmentSet]:
    """Each set with transform(direction, judgments) applied to the directions it judges (absent ones stay absent)."""
    out = {}
    for name, js in judgments.items():
        parts: dict[str, Judgments | None] = {}
        for direction in DIRECTIONS:
            judged = js.direction(direction)
            parts[direction] = None if judged is None else transform(direction, judged)
        out[name] = JudgmentSet(name, parts["i2t"], parts["t2i"], source=new_source(js.source))
    return out
