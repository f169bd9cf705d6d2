"""Corpus: the ground truth every model is evaluated against (ids, captions, mapping, labels)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from fico_registry.data.corpus_judgments import (
    check_corpus_judgments,
    hash_judgments,
    load_judgments,
    save_judgments,
    subset_judgments,
    tile_judgments,
)
from fico_registry.errors import DataFormatError, LabelError, MappingError, MissingInputError

FORMAT_VERSION = 1


class Repeated(Sequence):
    """A read-only sequence that repeats `base` `times` times without copying it."""

    def __init__(self, base: Sequence, times: int, suffix: bool = False) -> None:
        self.base, self.times, self.suffix = base, times, suffix

    def __len__(self) -> int:
        return len(self.base) * self.times

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list: ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self.base)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        copy, i = divmod(index, n)
        item = self.base[i]
        return f"{item}#{copy}" if self.suffix and copy else item


@dataclass(frozen=True)
class FeatureRef:
    """A precomputed per-item feature file (e.g. region features) attached to a corpus.

    `index[i]` is the row of the file for item i of the corpus (None: same order). `key` names
    the array inside a .mat / HDF5 file (None for .npy).
    """

    path: str
    modality: str  # "image" or "text"
    index: np.ndarray | None = None
    key: str | None = None

    def open(self) -> np.ndarray:
        from fico_registry.data.features import open_feature_array

        return open_feature_array(self.path, self.key)

    def rows(self, items: np.ndarray | slice | Sequence[int]) -> np.ndarray:
        """The feature rows of corpus items `items` (a slice or integer indices), in that order."""
        array = self.open()
        if isinstance(items, slice):
            items = np.arange(*items.indices(self.count))
        positions = np.asarray(items, dtype=np.int64)
        rows = positions if self.index is None else self.index[positions]
        return np.asarray(array[rows])

    @property
    def count(self) -> int:
        return len(self.index) if self.index is not None else int(self.open().shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """(items, ...) as the corpus sees it (after indexing)."""
        return (self.count, *self.open().shape[1:])

    def fingerprint(self) -> str:
        """Identity of the file content and row selection (for embedding-cache keys)."""
        from fico_registry.data.features import file_fingerprint

        digest = hashlib.sha256(file_fingerprint(self.path, self.key).encode())
        if self.index is not None:
            digest.update(np.ascontiguousarray(self.index, dtype="<i8").tobytes())
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Corpus:
    """Images, captions, which image each caption describes, and optional category labels.

    caption_to_image[j] is the index (into image_ids) of the image caption j describes; images
    may have any number of captions, but at least one. labels is (n_images, n_classes) multi-hot.
    """

    name: str
    split: str
    image_ids: Sequence[str]
    captions: Sequence[str]
    caption_to_image: np.ndarray
    image_paths: Sequence[str] | None = None  # relative to root (or absolute)
    root: str | None = None
    caption_ids: Sequence[str] | None = None
    labels: np.ndarray | None = None
    class_names: Sequence[str] | None = None
    features: dict[str, FeatureRef] = field(default_factory=dict)
    duplication: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    judgments: dict[str, Any] = field(default_factory=dict)  # name -> JudgmentSet (extended / graded relevance)

    def __post_init__(self) -> None:
        c2i = np.asarray(self.caption_to_image)
        if c2i.ndim != 1 or c2i.dtype.kind not in "iu":
            raise MappingError(f"caption_to_image must be a 1-d integer array, got shape {c2i.shape} dtype {c2i.dtype}")
        c2i = c2i.astype(np.int64, copy=False)
        object.__setattr__(self, "caption_to_image", c2i)
        n_img, n_cap = len(self.image_ids), len(self.captions)
        if n_img == 0 or n_cap == 0:
            raise MappingError(f"a corpus needs images and captions (got {n_img} images, {n_cap} captions)")
        if len(c2i) != n_cap:
            raise MappingError(f"caption_to_image has {len(c2i)} entries for {n_cap} captions")
        if c2i.min() < 0 or c2i.max() >= n_img:
            raise MappingError(f"caption_to_image values must lie in [0, {n_img - 1}]; found {c2i.min()}..{c2i.max()}")
        if self.image_paths is not None and len(self.image_paths) != n_img:
            raise MappingError(f"{len(self.image_paths)} image paths for {n_img} images")
        if self.caption_ids is not None and len(self.caption_ids) != n_cap:
            raise MappingError(f"{len(self.caption_ids)} caption ids for {n_cap} captions")
        if self.duplication == 1:
            counts = np.bincount(c2i, minlength=n_img)
            if (counts == 0).any():
                missing = [self.image_ids[i] for i in np.flatnonzero(counts == 0)[:5]]
                raise MappingError(f"{int((counts == 0).sum())} images have no caption (e.g. {missing})")
        if self.labels is not None:
            object.__setattr__(self, "labels", _check_labels(self.labels, n_img, self.class_names))
        if self.judgments:
            object.__setattr__(self, "judgments", check_corpus_judgments(self.judgments, n_img, n_cap))

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    @property
    def captions_per_image(self) -> np.ndarray:
        return np.bincount(self.caption_to_image, minlength=self.n_images)

    @property
    def caption_labels(self) -> np.ndarray | None:
        return None if self.labels is None else self.labels[self.caption_to_image]

    def __repr__(self) -> str:
        labels = "no labels" if self.labels is None else f"{self.labels.shape[1]} classes"
        dup = f", x{self.duplication}" if self.duplication != 1 else ""
        return f"Corpus({self.name}/{self.split}: {self.n_images} images, {self.n_captions} captions, {labels}{dup})"

    # -- identity ------------------------------------------------------------------------------
    @property
    def content_hash(self) -> str:
        """sha256 over ids, captions, the mapping and labels: the identity of this ground truth."""
        cached = self.meta.get("_content_hash")
        if cached:
            return cached
        base = self.meta.get("_base_hash")
        digest = hashlib.sha256()
        if base is not None:
            digest.update(f"duplicated:{base}:{self.duplication}".encode())
        else:
            digest.update(b"fico-corpus-v1\0")
            for item in self.image_ids:
                digest.update(str(item).encode() + b"\0")
            digest.update(b"\1")
            for text in self.captions:
                digest.update(text.encode() + b"\0")
            digest.update(b"\1" + self.caption_to_image.astype("<i8").tobytes())
            if self.labels is not None:
                digest.update(b"\1" + np.ascontiguousarray(self.labels, dtype=np.uint8).tobytes())
                digest.update(json.dumps(list(self.class_names or [])).encode())
            hash_judgments(digest, self.judgments)  # nothing without judgments: older hashes stay valid
        value = digest.hexdigest()
        self.meta["_content_hash"] = value
        return value

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]

    # -- derived corpora -----------------------------------------------------------------------
    def with_labels(self, labels: np.ndarray, class_names: Sequence[str] | None = None) -> Corpus:
        labels = _check_labels(labels, self.n_images, class_names)
        return replace(
            self,
            labels=labels,
            class_names=list(class_names) if class_names is not None else None,
            meta=_fresh(self.meta),
        )

    def with_judgments(self, name: str, judgments: Any) -> Corpus:
        """Attach a JudgmentSet (or an (i2t, t2i) pair of Judgments) under `name`, replacing one of that name."""
        from fico_registry.data.judgments import as_judgment_sets

        return replace(
            self, judgments={**self.judgments, **as_judgment_sets({name: judgments})}, meta=_fresh(self.meta)
        )

    def without_judgments(self) -> Corpus:
        """The same corpus without judgments: what the models' inputs (and the embedding cache) depend on."""
        return self if not self.judgments else replace(self, judgments={}, meta=_fresh(self.meta))

    def with_features(
        self,
        name: str,
        path: str | os.PathLike,
        *,
        modality: str = "image",
        ids: Sequence[str] | None = None,
        key: str | None = None,
        index: np.ndarray | Sequence[int] | None = None,
    ) -> Corpus:
        """Attach a precomputed feature file (.npy / .h5 / .mat) aligned by order, `ids` or `index`.

        By order, an image feature file may also hold each image k times in a row (one row per
        caption, the rkiros / SCAN im_div=1 layout): rows 0, k, 2k... are used. `ids` lists the
        item id of every file row; `index[i]` gives the file row of item i directly. `key` names
        the array inside a .mat / HDF5 file.
        """
        from fico_registry.data.features import align_by_ids, open_feature_array, region_rows_index

        if modality not in ("image", "text"):
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
        if ids is not None and index is not None:
            raise ValueError("pass ids= or index=, not both")
        array = open_feature_array(path, key)
        own_ids = (
            self.image_ids if modality == "image" else (self.caption_ids or [str(i) for i in range(self.n_captions)])
        )
        count = self.n_images if modality == "image" else self.n_captions
        rows = None
        what = f"{name} features ({path})"
        if ids is not None:
            if len(ids) != array.shape[0]:
                raise MissingInputError(f"{what}: {len(ids)} ids for {array.shape[0]} rows")
            rows = align_by_ids(own_ids, ids, what=what)
        elif index is not None:
            rows = np.asarray(index, dtype=np.int64)
            if rows.ndim != 1 or len(rows) != count:
                raise MissingInputError(f"{what}: index has {rows.shape} entries for {count} {modality}s")
            if len(rows) and (rows.min() < 0 or rows.max() >= array.shape[0]):
                raise MissingInputError(f"{what}: index values must lie in [0, {array.shape[0] - 1}]")
        elif modality == "image":
            rows = region_rows_index(array, count, what=what)
        elif array.shape[0] != count:
            hint = ""
            if array.shape[0] == 5 * self.n_images:
                hint = " (the file has 5 rows per image: load the corpus with captions_per_image=5)"
            raise MissingInputError(
                f"{what}: {array.shape[0]} rows but the corpus has {count} captions{hint}; pass ids= to align by id"
            )
        features = {**self.features, name: FeatureRef(str(Path(path).resolve()), modality, rows, key)}
        return replace(self, features=features, meta=_fresh(self.meta, keep_hash=True))

    def duplicated(self, factor: int) -> Corpus:
        """The FiCo-ITR scaling method: the same test set repeated `factor` times (no disk copies)."""
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"duplication factor must be a positive integer, got {factor!r}")
        if factor == 1:
            return self
        n = self.n_images
        c2i = (self.caption_to_image[None, :] + n * np.arange(factor)[:, None]).reshape(-1)
        features = {
            key: FeatureRef(
                ref.path,
                ref.modality,
                np.tile(ref.index if ref.index is not None else np.arange(ref.count), factor),
                ref.key,
            )
            for key, ref in self.features.items()
        }
        meta = {k: v for k, v in self.meta.items() if not k.startswith("_")}
        meta["_base_hash"] = self.content_hash
        return Corpus(
            name=self.name,
            split=self.split,
            image_ids=Repeated(self.image_ids, factor, suffix=True),
            captions=Repeated(self.captions, factor),
            caption_to_image=c2i,
            image_paths=None if self.image_paths is None else Repeated(self.image_paths, factor),
            root=self.root,
            caption_ids=None if self.caption_ids is None else Repeated(self.caption_ids, factor, suffix=True),
            labels=None if self.labels is None else np.tile(self.labels, (factor, 1)),
            class_names=self.class_names,
            features=features,
            duplication=self.duplication * factor,
            meta=meta,
            judgments=tile_judgments(self.judgments, factor),
        )

    def subset(self, n_images: int) -> Corpus:
        """The first `n_images` images and their captions (quick runs, tests)."""
        if n_images >= self.n_images:
            return self
        keep = self.caption_to_image < n_images
        caps = np.flatnonzero(keep)
        features = {}
        for key, ref in self.features.items():
            rows = ref.index if ref.index is not None else np.arange(ref.count)
            kept = rows[:n_images] if ref.modality == "image" else rows[caps]
            features[key] = FeatureRef(ref.path, ref.modality, kept, ref.key)
        return Corpus(
            name=self.name,
            split=f"{self.split}[:{n_images}]",
            image_ids=list(self.image_ids[:n_images]),
            captions=[self.captions[j] for j in caps.tolist()],
            caption_to_image=self.caption_to_image[caps],
            image_paths=None if self.image_paths is None else list(self.image_paths[:n_images]),
            root=self.root,
            caption_ids=None if self.caption_ids is None else [self.caption_ids[j] for j in caps.tolist()],
            labels=None if self.labels is None else self.labels[:n_images],
            class_names=self.class_names,
            features=features,
            meta={k: v for k, v in self.meta.items() if not k.startswith("_")},
            judgments=subset_judgments(self.judgments, n_images, self.n_images, caps, self.n_captions),
        )

    # -- items ---------------------------------------------------------------------------------
    def feature(self, name: str) -> FeatureRef:
        """The attached feature `name` (e.g. "regions"), or a MissingInputError saying how to attach it."""
        ref = self.features.get(name)
        if ref is None:
            have = ", ".join(sorted(self.features)) or "none"
            raise MissingInputError(
                f"{self.name}/{self.split} has no {name!r} features (it has: {have}); attach a file with "
                f"corpus.with_features({name!r}, path) or put it where the dataset loader looks for it"
            )
        return ref

    def image_path(self, i: int) -> Path:
        if self.image_paths is None:
            raise MissingInputError(f"{self.name}/{self.split} has no image files (only precomputed features)")
        path = Path(self.image_paths[i])
        if not path.is_absolute() and self.root is not None:
            path = Path(self.root) / path
        return path

    def load_image(self, i: int):  # -> PIL.Image.Image
        from PIL import Image

        path = self.image_path(i)
        if not path.exists():
            raise MissingInputError(f"image {self.image_ids[i]} not found at {path}; check the image root")
        with Image.open(path) as img:
            return img.convert("RGB")

    def iter_images(self, indices: Sequence[int] | None = None) -> Iterator:
        for i in indices if indices is not None else range(self.n_images):
            yield self.load_image(i)

    # -- persistence (JSON + .npy, never pickle) ---------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the corpus to a folder: corpus.json plus caption_to_image.npy / labels.npy.

        Feature files are recorded by absolute path, or relative to the folder when they lie inside
        it. The image root is recorded relative to the folder whenever a relative path exists (e.g.
        "../images": moving the folder together with its images keeps it valid) and also absolutely,
        the fallback when only the folder moved; `Corpus.load(..., image_root=)` relocates it.
        """
        if self.duplication != 1:
            raise ValueError("save the base corpus and call .duplicated() after loading")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        root, root_relative = (None, False) if self.root is None else _relative_root(self.root, folder)
        doc = {
            "format": "fico-corpus",
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "split": self.split,
            "content_hash": self.content_hash,
            "root": root,
            "root_relative": root_relative,
            "root_absolute": _absolute_fallback(self.root, root, root_relative),
            "image_ids": [str(x) for x in self.image_ids],
            "image_paths": None if self.image_paths is None else [str(p) for p in self.image_paths],
            "captions": list(self.captions),
            "caption_ids": None if self.caption_ids is None else [str(x) for x in self.caption_ids],
            "class_names": None if self.class_names is None else list(self.class_names),
            "features": {
                k: dict(
                    zip(("path", "relative"), _portable(ref.path, folder), strict=True),
                    modality=ref.modality,
                    indexed=ref.index is not None,
                    key=ref.key,
                )
                for k, ref in self.features.items()
            },
            "meta": {k: v for k, v in self.meta.items() if not k.startswith("_")},
        }
        if self.judgments:  # absent otherwise: older readers and files stay as they were
            doc["judgments"] = save_judgments(folder, self.judgments)
        _atomic_npy(folder / "caption_to_image.npy", self.caption_to_image)
        if self.labels is not None:
            _atomic_npy(folder / "labels.npy", self.labels.astype(np.uint8))
        for key, ref in self.features.items():
            if ref.index is not None:
                _atomic_npy(folder / f"feature_index.{key}.npy", ref.index)
        tmp = folder / f"corpus.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        tmp.replace(folder / "corpus.json")
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike, *, image_root: str | os.PathLike | None = None) -> Corpus:
        """Read a folder written by save(). image_root: where the images are now (the saved root is
        then ignored; image paths stay relative to it). The content hash does not depend on it."""
        folder = Path(path)
        if folder.is_file():
            folder = folder.parent
        try:
            doc = json.loads((folder / "corpus.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataFormatError(
                f"{folder} is not a saved corpus (no corpus.json); create one with Corpus.save()"
            ) from None
        if doc.get("format") != "fico-corpus":
            raise DataFormatError(f"{folder / 'corpus.json'} is not a fico corpus file")
        if doc.get("format_version", 0) > FORMAT_VERSION:
            raise DataFormatError(f"{folder} was written by a newer fico-registry; upgrade to read it")
        c2i = np.load(folder / "caption_to_image.npy", allow_pickle=False)
        labels = np.load(folder / "labels.npy", allow_pickle=False) if (folder / "labels.npy").exists() else None
        features = {}
        for key, ref in (doc.get("features") or {}).items():
            index = np.load(folder / f"feature_index.{key}.npy", allow_pickle=False) if ref.get("indexed") else None
            feature_path = str(folder.resolve() / ref["path"]) if ref.get("relative") else ref["path"]
            features[key] = FeatureRef(feature_path, ref["modality"], index, ref.get("key"))
        root = _saved_root(doc, folder) if image_root is None else str(Path(image_root).expanduser().resolve())
        corpus = cls(
            name=doc["name"],
            split=doc["split"],
            image_ids=doc["image_ids"],
            captions=doc["captions"],
            caption_to_image=c2i,
            image_paths=doc.get("image_paths"),
            root=root,
            caption_ids=doc.get("caption_ids"),
            labels=labels,
            class_names=doc.get("class_names"),
            features=features,
            meta=doc.get("meta") or {},
            judgments=load_judgments(folder, doc.get("judgments") or {}),
        )
        if doc.get("content_hash") and corpus.content_hash != doc["content_hash"]:
            raise DataFormatError(
                f"{folder}: content hash {corpus.short_hash} does not match the recorded "
                f"{doc['content_hash'][:12]}; the files were edited after saving"
            )
        return corpus


def _fresh(meta: dict[str, Any], keep_hash: bool = False) -> dict[str, Any]:
    """A copy of meta without cached values; `keep_hash` when the ground truth did not change."""
    kept = ("_content_hash", "_base_hash") if keep_hash else ()
    return {k: v for k, v in meta.items() if not k.startswith("_") or k in kept}


def _check_labels(labels: Any, n_images: int, class_names: Sequence[str] | None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise LabelError(f"labels must be (n_images, n_classes) multi-hot, got shape {labels.shape}")
    if labels.shape[0] != n_images:
        raise LabelError(f"labels have {labels.shape[0]} rows but the corpus has {n_images} images")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.isin(labels, (0, 1)).all():
        raise LabelError("labels must be multi-hot: every entry 0 or 1")
    if class_names is not None and len(class_names) != labels.shape[1]:
        raise LabelError(f"{len(class_names)} class names for {labels.shape[1]} label columns")
    return labels.astype(np.uint8, copy=False)


def _portable(path: str | os.PathLike, folder: Path) -> tuple[str, bool]:
    """(path, relative): relative to `folder` when it lies inside it, else absolute."""
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(folder.resolve()).as_posix() or ".", True
    except ValueError:
        return str(absolute), False


def _absolute_fallback(root: str | os.PathLike | None, saved: str | None, relative: bool) -> str | None:
    """Where the images are, for when only the corpus folder moves; None when they live inside the
    folder (they move with it), which keeps a self-contained corpus folder byte-identical wherever
    it was written."""
    if root is None or (relative and saved is not None and not saved.startswith("..")):
        return None
    return str(Path(root).resolve())


def _relative_root(root: str | os.PathLike, folder: Path) -> tuple[str, bool]:
    """(root, relative): relative to `folder` (even outside it, '../images') when one exists, else absolute
    (e.g. another Windows drive)."""
    absolute = Path(root).resolve()
    try:
        return Path(os.path.relpath(absolute, folder.resolve())).as_posix(), True
    except ValueError:
        return str(absolute), False


def _saved_root(doc: dict[str, Any], folder: Path) -> str | None:
    """The image root of a saved corpus: its relative form if that folder exists, else the absolute one
    recorded beside it (only the corpus folder moved). Old files hold one absolute root."""
    root = doc.get("root")
    if root is None or not doc.get("root_relative"):
        return root
    relative = os.path.normpath(folder.resolve() / root)
    fallback = doc.get("root_absolute")
    if not os.path.isdir(relative) and fallback and os.path.isdir(fallback):
        return fallback
    return relative


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}.npy")
    np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
    tmp.replace(path)
