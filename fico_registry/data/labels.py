"""Category labels for category-level retrieval, and the NUS-WIDE hashing benchmark.

Label sources:
- COCO ``instances_*.json``: the 80 categories ordered by category id, multi-hot per image
  (`coco_category_labels`). Every annotation counts, crowd regions included.
- FiCo-ITR label files (``flickr30k-karpathy-test-lall.mat``, ``coco-karpathy-testall-lall.mat``):
  a matrix ``LAll`` with one row per test image in Karpathy order (Query2Label predictions over
  the 80 COCO categories). MATLAB v5 (scipy.io) and v7.3 (HDF5; stored column-major, so
  transposed on reading) are both read, as are .h5 files and plain .npy matrices
  (`read_label_matrix`, `label_matrix_for_corpus`).
- NUS-WIDE style feature files hold their labels beside the features (`load_nus_wide`).
Counts that do not line up raise LabelError saying which file and which counts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.data.corpus import Corpus
from fico_registry.data.features import list_variables, open_feature_array, read_id_file
from fico_registry.errors import DataFormatError, LabelError, MissingInputError

# The 80 COCO categories in category-id order (the column order of every COCO label matrix here).
COCO_CATEGORY_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

LABEL_KEYS = ("LAll", "labels", "label", "L")


# -- COCO instances ----------------------------------------------------------------------------
def coco_category_labels(
    instances_json: str | os.PathLike | Sequence[str | os.PathLike], corpus: Corpus
) -> tuple[np.ndarray, list[str]]:
    """(labels (n_images, 80) uint8, class names) from COCO `instances_*.json` file(s).

    Corpus image ids must be COCO image ids ("391895", as `load_karpathy` makes them for COCO)
    or COCO file names / stems ending in the id ("COCO_val2014_000000391895"). Karpathy's
    train and restval images come from both train2014 and val2014: pass both files for them.
    """
    files = (
        [Path(instances_json)] if isinstance(instances_json, str | os.PathLike) else [Path(p) for p in instances_json]
    )
    if not files:
        raise LabelError("coco_category_labels needs at least one instances_*.json file")
    wanted = _coco_ids(corpus)
    categories: list[tuple[int, str]] | None = None
    known_images: set[int] = set()
    present: dict[int, set[int]] = {}
    for path in files:
        if not path.is_file():
            raise MissingInputError(f"COCO annotation file {path} not found")
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        try:
            cats = sorted((int(c["id"]), str(c["name"])) for c in doc["categories"])
            images = {int(im["id"]) for im in doc["images"]}
            annotations = doc["annotations"]
        except (KeyError, TypeError, ValueError):
            raise DataFormatError(
                f"{path}: not a COCO instances file (needs categories, images, annotations)"
            ) from None
        if categories is None:
            categories = cats
        elif cats != categories:
            raise DataFormatError(f"{path}: its categories differ from {files[0].name}'s")
        known_images |= images
        for ann in annotations:
            image_id = int(ann["image_id"])
            if image_id in wanted:
                present.setdefault(image_id, set()).add(int(ann["category_id"]))
        del doc
    assert categories is not None
    missing = [i for i in wanted if i not in known_images]
    if missing:
        raise LabelError(
            f"{len(missing)} of the corpus's {len(wanted)} images are not in {', '.join(f.name for f in files)} "
            f"(e.g. COCO ids {missing[:3]}); Karpathy train/restval images need both instances_train2014.json "
            f"and instances_val2014.json"
        )
    column = {cat_id: j for j, (cat_id, _name) in enumerate(categories)}
    labels = np.zeros((corpus.n_images, len(categories)), dtype=np.uint8)
    for row, image_id in enumerate(wanted):
        for cat_id in present.get(image_id, ()):
            if cat_id not in column:
                raise DataFormatError(f"annotation of image {image_id} uses unknown category id {cat_id}")
            labels[row, column[cat_id]] = 1
    return labels, [name for _id, name in categories]


def _coco_ids(corpus: Corpus) -> list[int]:
    ids = []
    for item in corpus.image_ids:
        text = Path(str(item)).stem
        match = re.search(r"(\d+)$", text)
        if match is None:
            raise LabelError(
                f"image id {item!r} is not a COCO image id; load COCO with load_karpathy / load_coco, "
                f"whose image ids are the COCO ids"
            )
        ids.append(int(match.group(1)))
    return ids


# -- label matrices (.mat v5 / v7.3, .h5, .npy) ----------------------------------------------------
def read_label_matrix(
    path: str | os.PathLike, key: str | None = None, *, n_images: int | None = None, transposed: bool | None = None
) -> np.ndarray:
    """A multi-hot (rows, classes) uint8 matrix from .mat (v5 or v7.3) / .h5 / .npy.

    key: the variable name (default: LAll, or the only variable in the file). MATLAB v7.3 files
    are transposed back to MATLAB's (rows, classes); `transposed` overrides that guess.
    n_images: the expected row count; a mismatch raises LabelError.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"label file {path} not found")
    if key is None and path.suffix.lower() != ".npy":
        names = list_variables(path)
        key = next((k for k in LABEL_KEYS if k in names), None)
        if key is None and len(names) != 1:
            raise LabelError(f"{path}: no LAll variable; it holds {', '.join(names)}: pass key=")
    try:
        matrix = np.array(open_feature_array(path, key, transposed=transposed))
    except DataFormatError as exc:
        raise LabelError(str(exc)) from None
    if matrix.ndim == 1:
        raise LabelError(f"{path}: labels must be a (n_images, n_classes) matrix; got a vector of {matrix.shape[0]}")
    if matrix.ndim != 2:
        raise LabelError(f"{path}: labels must be 2-d (n_images, n_classes); got shape {matrix.shape}")
    if n_images is not None and matrix.shape[0] != n_images:
        hint = ""
        if matrix.shape[1] == n_images:
            hint = " (the matrix looks transposed: pass transposed= to read it the other way)"
        raise LabelError(f"{path}: {matrix.shape[0]} label rows but the corpus has {n_images} images{hint}")
    if not np.isin(matrix, (0, 1)).all():
        values = np.unique(matrix)[:6]
        raise LabelError(f"{path}: labels must be multi-hot 0/1; found values {values.tolist()}")
    return matrix.astype(np.uint8)


def label_matrix_for_corpus(
    path: str | os.PathLike,
    corpus: Corpus,
    *,
    key: str | None = None,
    names: str | os.PathLike | Sequence[str] | None = None,
    class_names: Sequence[str] | str | None = None,
    transposed: bool | None = None,
) -> tuple[np.ndarray, list[str] | None]:
    """Labels from a file, aligned to the corpus images: by order, or by `names`.

    names: the image name of each label row (a list or a text file, one per line, as Query2Label's
    `flickr30k_names.txt`); matched to corpus image ids, file names or paths (extension ignored).
    class_names: a list, "coco" (the 80 COCO categories; the matrix must have 80 columns) or None.
    """
    if names is None:
        matrix = read_label_matrix(path, key, n_images=corpus.n_images, transposed=transposed)
    else:
        matrix = read_label_matrix(path, key, transposed=transposed)
        row_names = read_id_file(names) if isinstance(names, str | os.PathLike) else [str(x) for x in names]
        if len(row_names) != matrix.shape[0]:
            raise LabelError(f"{path}: {matrix.shape[0]} label rows but {len(row_names)} names")
        matrix = matrix[_rows_by_name(row_names, corpus, what=str(path))]
    if isinstance(class_names, str):
        if class_names != "coco":
            raise ValueError(f"class_names must be a list, 'coco' or None; got {class_names!r}")
        if matrix.shape[1] != len(COCO_CATEGORY_NAMES):
            raise LabelError(f"{path}: class_names='coco' needs 80 columns, the matrix has {matrix.shape[1]}")
        class_names = list(COCO_CATEGORY_NAMES)
    return matrix, None if class_names is None else list(class_names)


def _rows_by_name(row_names: Sequence[str], corpus: Corpus, *, what: str) -> np.ndarray:
    position: dict[str, int] = {}
    for row, name in enumerate(row_names):
        position.setdefault(Path(name).stem, row)
    index = np.empty(corpus.n_images, dtype=np.int64)
    missing: list[str] = []
    for i, item in enumerate(corpus.image_ids):
        candidates = [Path(str(item)).stem]
        if corpus.image_paths is not None:
            candidates.append(Path(str(corpus.image_paths[i])).stem)
        found = next((position[c] for c in candidates if c in position), None)
        if found is None:
            missing.append(item)
        else:
            index[i] = found
    if missing:
        raise LabelError(f"{what}: {len(missing)} corpus images have no label row (e.g. {missing[:3]})")
    return index


# -- NUS-WIDE ------------------------------------------------------------------------------------
NUS_WIDE_FILES = ("nus-wide-10k.mat", "nus-wide-10k.h5", "nus-wide-10k.h5py", "nus-wide-10k.hdf5")
NUS_WIDE_TC10_FILES = ("nus-wide-tc10-xall-vgg.mat", "nus-wide-tc10-yall.mat", "nus-wide-tc10-lall.mat")
_INDEX_NAMES = {
    "query": ("indexQuery", "index_query"),
    "retrieval": ("indexDatabase", "indexRetrieval", "index_database", "index_retrieval"),
    "train": ("indexTrain", "index_train"),
}


def load_nus_wide(
    root: str | os.PathLike | None = None,
    split: str = "query",
    *,
    file: str | os.PathLike | None = None,
    query_size: int = 2100,
    image_feature: str | None = None,
    text_feature: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Corpus:
    """A NUS-WIDE(-10K) style hashing benchmark: precomputed features + labels, one text per image.

    Expected files in `root` (default $FICO_HOME/datasets/nus-wide), either
    (a) one file `nus-wide-10k.mat` (MATLAB v5 or v7.3) or `nus-wide-10k.h5` (any of
        .h5/.h5py/.hdf5), or the `file` given, holding
          XAll (n, d_img) image features (e.g. 4096-d VGG-19 fc7),
          YAll (n, d_txt) text features (e.g. 300-d Doc2Vec, or 1000-d tag bag-of-words),
          LAll (n, n_classes) multi-hot labels (10 classes for NUS-WIDE-10K / TC-10),
        and optionally the split as 1-based (MATLAB) row numbers: indexQuery, indexDatabase
        (alias indexRetrieval) and indexTrain, at the top level or in a struct / group `param`;
    (b) UCCH's three TC-10 files nus-wide-tc10-xall-vgg.mat (XAll), nus-wide-tc10-yall.mat
        (YAll), nus-wide-tc10-lall.mat (LAll).
    Without index vectors the split follows UCCH: query = the last `query_size` rows,
    retrieval = all the others, train = retrieval.

    The Corpus has one "caption" per image (placeholder text naming the row; the text side is
    the attached feature). Features: image rows as `image_feature` (default "vgg19-fc7" when
    4096-d, else "image-features"), text rows as `text_feature` (default "doc2vec" when 300-d,
    else "text-features"). Image ids are the 0-based file rows.
    """
    if split not in _INDEX_NAMES:
        raise ValueError(f"nus-wide split must be one of {', '.join(_INDEX_NAMES)}; got {split!r}")
    if root is None:
        from fico_registry.data.karpathy import default_root

        root = default_root("nus-wide")
    root = Path(root)
    sources = _nus_wide_sources(root, file)
    x_path, y_path, l_path = sources
    images = open_feature_array(*x_path)
    texts = open_feature_array(*y_path)
    labels = read_label_matrix(*l_path)
    n = labels.shape[0]
    for what, array in (("XAll (images)", images), ("YAll (texts)", texts)):
        if array.ndim != 2:
            raise DataFormatError(f"{what} must be a 2-d (items, dim) matrix; got shape {array.shape}")
        if array.shape[0] != n:
            raise LabelError(
                f"nus-wide: {what} has {array.shape[0]} rows but LAll has {n}; the files do not belong together"
            )
    rows, split_source = _nus_wide_rows(x_path[0], split, n, query_size)
    ids = [str(int(r)) for r in rows]
    image_name = image_feature or ("vgg19-fc7" if images.shape[1] == 4096 else "image-features")
    text_name = text_feature or ("doc2vec" if texts.shape[1] == 300 else "text-features")
    corpus = Corpus(
        name="nus-wide",
        split=split,
        image_ids=ids,
        captions=[f"[nus-wide text features, row {i}]" for i in ids],
        caption_to_image=np.arange(len(rows), dtype=np.int64),
        caption_ids=ids,
        labels=labels[rows],
        class_names=None if class_names is None else list(class_names),
        meta={
            "source": "nus-wide",
            "files": sorted({Path(p).name for p, _key in sources}),
            "split_from": split_source,
            "captions_are_placeholders": True,
        },
    )
    corpus = corpus.with_features(image_name, x_path[0], modality="image", key=x_path[1], index=rows)
    return corpus.with_features(text_name, y_path[0], modality="text", key=y_path[1], index=rows)


def _nus_wide_sources(root: Path, file: str | os.PathLike | None) -> list[tuple[str, str | None]]:
    if file is not None:
        path = Path(file) if Path(file).is_absolute() or Path(file).exists() else root / file
        if not path.is_file():
            raise MissingInputError(f"nus-wide: {path} not found")
        return [(str(path), "XAll"), (str(path), "YAll"), (str(path), "LAll")]
    for name in NUS_WIDE_FILES:
        if (root / name).is_file():
            found = str(root / name)
            return [(found, "XAll"), (found, "YAll"), (found, "LAll")]
    tc10 = [root / name for name in NUS_WIDE_TC10_FILES]
    if all(p.is_file() for p in tc10):
        return [(str(tc10[0]), "XAll"), (str(tc10[1]), "YAll"), (str(tc10[2]), "LAll")]
    raise MissingInputError(
        f"nus-wide: no data in {root}: expected {NUS_WIDE_FILES[0]} (or .h5) with XAll / YAll / LAll, "
        f"or the three UCCH files {', '.join(NUS_WIDE_TC10_FILES)}"
    )


def _nus_wide_rows(path: str, split: str, n: int, query_size: int) -> tuple[np.ndarray, str]:
    indices = _read_index_vectors(path)
    if indices:
        if split not in indices:
            if split == "train" and "retrieval" in indices:
                split_index = indices["retrieval"]
            else:
                raise DataFormatError(
                    f"{path} defines {', '.join(sorted(indices))} index vectors but not the {split} one"
                )
        else:
            split_index = indices[split]
        rows = np.asarray(split_index, dtype=np.int64).reshape(-1) - 1  # MATLAB row numbers are 1-based
        if rows.size == 0 or rows.min() < 0 or rows.max() >= n:
            raise DataFormatError(f"{path}: {split} index values must be 1-based row numbers in [1, {n}]")
        return rows, "index vectors in the file"
    if not 0 < query_size < n:
        raise ValueError(f"query_size must lie in [1, {n - 1}] for {n} items; got {query_size}")
    if split == "query":
        return np.arange(n - query_size, n, dtype=np.int64), f"last {query_size} rows"
    return np.arange(0, n - query_size, dtype=np.int64), f"all but the last {query_size} rows"


def _read_index_vectors(path: str) -> dict[str, np.ndarray]:
    """indexQuery / indexDatabase / indexTrain at the top level or in `param`, if the file has them."""
    found: dict[str, np.ndarray] = {}
    if Path(path).suffix.lower() == ".mat" and not _is_hdf5_file(path):
        from scipy.io import loadmat, whosmat

        names = {name for name, _shape, _cls in whosmat(path)}
        wanted = [n for aliases in _INDEX_NAMES.values() for n in aliases if n in names]
        doc: dict[str, Any] = loadmat(path, variable_names=[*wanted, "param"], squeeze_me=True, struct_as_record=False)
        param = doc.get("param")
        for split, aliases in _INDEX_NAMES.items():
            for alias in aliases:
                value = doc.get(alias)
                if value is None and param is not None:
                    value = getattr(param, alias, None)
                if value is not None:
                    found[split] = np.asarray(value).reshape(-1)
                    break
        return found
    import h5py

    with h5py.File(path, "r") as handle:
        for split, aliases in _INDEX_NAMES.items():
            for alias in aliases:
                for name in (alias, f"param/{alias}"):
                    if name in handle and isinstance(handle[name], h5py.Dataset):
                        found[split] = np.asarray(handle[name][()]).reshape(-1)
                        break
                if split in found:
                    break
    return found


def _is_hdf5_file(path: str) -> bool:
    import h5py

    return bool(h5py.is_hdf5(path))
