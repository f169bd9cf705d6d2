"""Karpathy splits of COCO, Flickr30K and Flickr8K (`dataset_{coco,flickr30k,flickr8k}.json`).

The file lists ``images[]`` with ``filename``, ``filepath`` (COCO only: ``val2014`` / ``train2014``),
``imgid``, ``cocoid`` (COCO only), ``split`` (``train`` / ``val`` / ``test`` / ``restval``) and
``sentences[]`` (``raw``, ``tokens``, ``imgid``, ``sentid``).

What the loader produces:
- captions: ``sentences[].raw`` stripped, in file order. Every sentence is kept by default, so the
  COCO 5K test has 5,000 images and 25,010 captions (a few test images have 6 or 7 sentences).
  The FiCo-ITR / VSE-lineage precomputed files (``testall_caps.txt``, Doc2Vec matrices) hold
  exactly 5 per image (25,000): ``captions_per_image=5`` keeps the first 5 of each image to
  match them.
- image ids: the COCO image id (``cocoid``) as a string for COCO, e.g. "391895" (so COCO
  ``instances_*.json`` labels map onto it), else the file name without extension, e.g.
  "1000092795" for Flickr30K. caption ids: ``sentid`` as a string.
- image paths: ``filepath/filename`` (COCO: ``val2014/COCO_val2014_000000391895.jpg``) or
  ``filename``, relative to `image_root`.
- the split: "train" includes COCO's "restval" (the 113,287-image training set); "restval" alone
  is accepted too.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.data.corpus import Corpus
from fico_registry.data.features import find_region_features, open_feature_array, read_id_file
from fico_registry.errors import DataFormatError, MissingInputError

KARPATHY_SPLITS = ("train", "val", "test", "restval")

# Folder names the precomputed (SCAN / VSE / IMRAM) files use for each Karpathy split.
_PRECOMP_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "coco": {"test": ("testall", "test"), "val": ("dev", "val"), "train": ("train",)},
    "flickr30k": {"test": ("test",), "val": ("dev", "val"), "train": ("train",)},
    "flickr8k": {"test": ("test",), "val": ("dev", "val"), "train": ("train",)},
}
_PRECOMP_FOLDERS = {
    "coco": ("precomp", "coco_precomp", "."),
    "flickr30k": ("precomp", "f30k_precomp", "."),
    "flickr8k": ("precomp", "f8k_precomp", "."),
}
_IMAGE_FOLDERS = {"coco": ".", "flickr30k": "flickr30k-images", "flickr8k": "Flicker8k_Dataset"}
_FICO_LABEL_FILES = {
    ("flickr30k", "test"): "flickr30k-karpathy-test-lall.mat",
    ("coco", "test"): "coco-karpathy-testall-lall.mat",
}


def load_karpathy(
    json_path: str | os.PathLike,
    split: str = "test",
    image_root: str | os.PathLike | None = None,
    *,
    captions_per_image: int | None = None,
    name: str | None = None,
) -> Corpus:
    """Read one split of a Karpathy `dataset_*.json` into a Corpus (see the module docstring).

    captions_per_image: None keeps every sentence (COCO 5K test: 25,010 captions); an integer k
    keeps the first k of each image and raises DataFormatError if an image has fewer.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"split must be one of {', '.join(KARPATHY_SPLITS)}; got {split!r}")
    if captions_per_image is not None and (not isinstance(captions_per_image, int) or captions_per_image < 1):
        raise ValueError(f"captions_per_image must be a positive integer or None, got {captions_per_image!r}")
    json_path = Path(json_path)
    if not json_path.is_file():
        raise MissingInputError(
            f"Karpathy split file {json_path} not found (dataset_coco.json / dataset_flickr30k.json ...)"
        )
    try:
        with open(json_path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{json_path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DataFormatError(f"{json_path}: expected a Karpathy split file with an 'images' list")
    dataset = str(doc.get("dataset") or name or json_path.stem.removeprefix("dataset_"))
    wanted = {"train", "restval"} if split == "train" else {split}

    image_ids: list[str] = []
    image_paths: list[str] = []
    captions: list[str] = []
    caption_ids: list[str] = []
    caption_to_image: list[int] = []
    coco_ids: list[int] = []
    for position, entry in enumerate(doc["images"]):
        try:
            entry_split = entry["split"]
            filename = entry["filename"]
            sentences = entry["sentences"]
        except (KeyError, TypeError):
            raise DataFormatError(f"{json_path}: images[{position}] lacks split / filename / sentences") from None
        if entry_split not in wanted:
            continue
        if not sentences:
            raise DataFormatError(f"{json_path}: image {filename} has no sentences")
        if captions_per_image is not None:
            if len(sentences) < captions_per_image:
                raise DataFormatError(
                    f"{json_path}: image {filename} has {len(sentences)} sentences, "
                    f"fewer than captions_per_image={captions_per_image}"
                )
            sentences = sentences[:captions_per_image]
        index = len(image_ids)
        if "cocoid" in entry:
            coco_ids.append(int(entry["cocoid"]))
            image_ids.append(str(entry["cocoid"]))
        else:
            image_ids.append(Path(filename).stem)
        filepath = entry.get("filepath")
        image_paths.append(f"{filepath}/{filename}" if filepath else filename)
        for number, sentence in enumerate(sentences):
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            if not isinstance(raw, str):
                raise DataFormatError(f"{json_path}: image {filename} sentence {number} has no 'raw' text")
            captions.append(raw.strip())
            caption_ids.append(str(sentence.get("sentid", f"{image_ids[-1]}#{number}")))
            caption_to_image.append(index)
    if not image_ids:
        present = sorted({str(e.get("split")) for e in doc["images"] if isinstance(e, dict)})
        raise DataFormatError(f"{json_path}: no images in split {split!r} (the file has: {', '.join(present)})")
    if len(set(image_ids)) != len(image_ids):
        raise DataFormatError(f"{json_path}: split {split!r} lists an image twice")

    meta: dict[str, Any] = {
        "source": "karpathy",
        "karpathy_json": json_path.name,
        "captions_per_image": captions_per_image,
    }
    if coco_ids and len(coco_ids) == len(image_ids):
        meta["id_kind"] = "cocoid"
    else:
        meta["id_kind"] = "filename-stem"
    return Corpus(
        name=dataset,
        split=split,
        image_ids=image_ids,
        captions=captions,
        caption_to_image=np.asarray(caption_to_image, dtype=np.int64),
        image_paths=image_paths,
        root=None if image_root is None else str(Path(image_root).resolve()),
        caption_ids=caption_ids,
        meta=meta,
    )


# -- dataset loaders (registered in fico_registry.builtins) -------------------------------------
def _folder_loader(dataset: str, title: str) -> Callable[..., Corpus]:
    """The registered loader of one Karpathy dataset: `load_dataset_folder` with the dataset name bound."""

    def load(root: str | os.PathLike | None = None, split: str = "test", **options: Any) -> Corpus:
        return load_dataset_folder(dataset, root, split, **options)

    load.__name__ = load.__qualname__ = f"load_{dataset}"
    load.__doc__ = f"{title} Karpathy split from `root` (keyword options: see `load_dataset_folder`)."
    return load


load_coco = _folder_loader("coco", "MS-COCO 2014")
load_flickr30k = _folder_loader("flickr30k", "Flickr30K")
load_flickr8k = _folder_loader("flickr8k", "Flickr8K")


def default_root(dataset: str) -> Path:
    from fico_registry.models.loading import fico_home

    return fico_home() / "datasets" / dataset


def load_dataset_folder(
    dataset: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    captions_per_image: int | None = None,
    image_root: str | os.PathLike | None = None,
    labels: str | os.PathLike | bool = "auto",
    regions: str | os.PathLike | bool = "auto",
    region_ids: str = "auto",
) -> Corpus:
    """A Karpathy dataset laid out in one folder (root=None: $FICO_HOME/datasets/<dataset>).

    root holds `dataset_<dataset>.json` (also looked for in root/annotations/ and root/karpathy/),
    the images (COCO: root/val2014/, root/train2014/; Flickr30K: root/flickr30k-images/;
    Flickr8K: root/Flicker8k_Dataset/; override with image_root), and optionally:
    - labels="auto": FiCo-ITR labels (flickr30k-karpathy-test-lall.mat / coco-karpathy-testall-lall.mat,
      test split only), else for COCO the 80 categories from annotations/instances_{val,train}2014.json.
      A path: a label file (.mat LAll / .h5 / .npy) or, for COCO, an instances json. False: none.
    - regions="auto": bottom-up region features `{split}_ims.npy` / `{split}_feat.npy` in
      root/precomp/, root/<f30k|coco|f8k>_precomp/ or root/ (COCO 5K test: testall_*, val: dev_*),
      attached as the feature "regions" when present. A path: that file. False: none.
    - region_ids: "auto" aligns the region rows by a `{split}_ids.txt` beside them when it names
      every corpus image, else by order; "order" ignores id files.
    """
    if root is None:
        root = default_root(dataset)
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"{dataset}: data folder {root} does not exist; pass root= (see `fico datasets`)")
    json_path = _find_first(root, [f"dataset_{dataset}.json"], ("", "annotations", "karpathy", "data"))
    if json_path is None:
        raise MissingInputError(
            f"{dataset}: dataset_{dataset}.json (the Karpathy split file) not found in {root}; put it there "
            f"(it is distributed with Karpathy's neuraltalk splits)"
        )
    if image_root is None:
        image_root = root / _IMAGE_FOLDERS[dataset]
    corpus = load_karpathy(json_path, split, image_root, captions_per_image=captions_per_image, name=dataset)
    # Models on precomputed features need no images: note whether they are there, do not require them.
    meta = {"root": str(root.resolve()), "images_present": corpus.image_path(0).is_file()}
    corpus = _with_meta(corpus, meta)
    if labels is not False and labels is not None:
        corpus = _attach_labels(dataset, corpus, root, split, labels)
    if regions is not False and regions is not None:
        corpus = _attach_regions(dataset, corpus, root, split, regions, region_ids)
    return corpus


def _with_meta(corpus: Corpus, extra: dict[str, Any]) -> Corpus:
    from dataclasses import replace

    return replace(corpus, meta={**corpus.meta, **extra})


def _find_first(root: Path, names: Sequence[str], folders: Sequence[str]) -> Path | None:
    for folder in folders:
        for name in names:
            candidate = root / folder / name
            if candidate.is_file():
                return candidate
    return None


def _attach_labels(dataset: str, corpus: Corpus, root: Path, split: str, labels: Any) -> Corpus:
    from fico_registry.data.labels import coco_category_labels, label_matrix_for_corpus

    source: Path | list[Path] | None = None
    if labels == "auto":
        fico_name = _FICO_LABEL_FILES.get((dataset, split))
        fico_file = _find_first(root, [fico_name], ("", "labels", "annotations")) if fico_name else None
        if fico_file is not None:
            source = fico_file
        elif dataset == "coco":
            folders = sorted({Path(p).parts[0] for p in corpus.image_paths or [] if len(Path(p).parts) > 1})
            files = [root / "annotations" / f"instances_{folder}.json" for folder in folders]
            if files and all(f.is_file() for f in files):
                source = files
        if source is None:
            return corpus
    else:
        source = _resolve(root, labels)
    names: list[str] | None
    if isinstance(source, list) or source.suffix == ".json":
        matrix, names = coco_category_labels(source, corpus)
    else:
        # FiCo-ITR's files hold Query2Label predictions over the 80 COCO categories
        fico_predictions = source.name in _FICO_LABEL_FILES.values()
        matrix, names = label_matrix_for_corpus(source, corpus, class_names="coco" if fico_predictions else None)
    labelled = corpus.with_labels(matrix, names)
    shown = [p.name for p in source] if isinstance(source, list) else source.name
    return _with_meta(labelled, {"labels_source": shown})


def _attach_regions(dataset: str, corpus: Corpus, root: Path, split: str, regions: Any, region_ids: str) -> Corpus:
    from fico_registry.data.features import attach_region_features

    if region_ids not in ("auto", "order"):
        raise ValueError(f"region_ids must be 'auto' or 'order', got {region_ids!r}")
    if regions == "auto":
        candidates = (
            find_region_features(root / folder, [name])
            for folder in _PRECOMP_FOLDERS[dataset]
            for name in _PRECOMP_SPLITS[dataset].get(split, ())
        )
        path = next((c for c in candidates if c is not None and _rows_fit(c, corpus)), None)
        if path is None:
            return corpus
    else:
        path = _resolve(root, regions)
    ids = None
    prefix = path.name.rsplit("_", 1)[0]
    ids_file = path.with_name(f"{prefix}_ids.txt")
    if region_ids == "auto" and ids_file.is_file():
        file_ids = read_id_file(ids_file)
        own = {str(x) for x in corpus.image_ids}
        if own <= set(file_ids):
            ids = file_ids
        else:
            warnings.warn(
                f"{ids_file.name} does not name every {dataset} {split} image; aligning {path.name} by order",
                stacklevel=3,
            )
    attached = attach_region_features(corpus, path, ids=ids)
    return _with_meta(attached, {"regions_source": path.name, "regions_aligned_by": "ids" if ids else "order"})


def _resolve(root: Path, path: str | os.PathLike) -> Path:
    """A user-given file: as given if it exists, else relative to the dataset root."""
    given = Path(path)
    return given if given.exists() or given.is_absolute() else root / given


def _rows_fit(path: Path, corpus: Corpus) -> bool:
    """Whether an auto-discovered region file can belong to this split (e.g. coco test_ims is 1K)."""
    rows = open_feature_array(path).shape[0]
    return rows == corpus.n_images or (rows > corpus.n_images and rows % corpus.n_images == 0)
