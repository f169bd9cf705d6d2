"""Saving and loading Doc2Vec models without pickle.

gensim's own Doc2Vec.save/load pickles the whole object, and unpickling can run arbitrary code,
so a model file from a stranger is unsafe to open that way. We write a folder instead:

    doc2vec.json         format, parameters, vocabulary (word, count) in index order, provenance
    word_vectors.npy     wv.vectors        (vocabulary x vector_size)
    syn1neg.npy          output weights for negative sampling (syn1.npy with hierarchical softmax)
    cum_table.npy        negative-sampling table;  sample_int.npy  down-sampling thresholds

and read it back with np.load(allow_pickle=False) into a freshly built gensim model. Everything
inference needs is there; the training documents' own vectors are not kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import DataFormatError

FORMAT = "fico-doc2vec/1"
# The Doc2Vec parameters a pipeline config sets for training (and fingerprints), in that order.
TRAIN_PARAMS = (
    "vector_size",
    "dm",
    "dbow_words",
    "window",
    "min_count",
    "sample",
    "negative",
    "hs",
    "alpha",
    "min_alpha",
    "seed",
    "epochs",
)
# Everything that shapes a trained model: those, and options the configs leave at gensim's defaults.
MODEL_PARAMS = (*TRAIN_PARAMS, "dm_mean", "dm_concat", "ns_exponent")


def model_params(model: Any) -> dict[str, Any]:
    """The constructor parameters that shape a trained gensim Doc2Vec, as plain JSON values."""
    params = {
        "vector_size": int(model.vector_size),
        "dm": int(not model.sg),
        "dbow_words": int(model.dbow_words),
        "window": int(model.window),
        "min_count": int(model.min_count),
        "sample": float(model.sample),
        "negative": int(model.negative),
        "hs": int(model.hs),
        "alpha": float(model.alpha),
        "min_alpha": float(model.min_alpha),
        "seed": int(model.seed),
        "epochs": int(model.epochs),
        "dm_mean": int(bool(model.cbow_mean)),
        "dm_concat": int(model.dm_concat),
        "ns_exponent": float(model.ns_exponent),
    }
    return params


def _arrays(model: Any) -> dict[str, np.ndarray]:
    arrays = {
        "word_vectors": np.ascontiguousarray(model.wv.vectors, dtype=np.float32),
        "sample_int": np.ascontiguousarray(model.wv.expandos["sample_int"], dtype=np.uint32),
    }
    if model.negative:
        arrays["syn1neg"] = np.ascontiguousarray(model.syn1neg, dtype=np.float32)
        arrays["cum_table"] = np.ascontiguousarray(model.cum_table, dtype=np.uint32)
    if model.hs:
        arrays["syn1"] = np.ascontiguousarray(model.syn1, dtype=np.float32)
    return arrays


def content_sha256(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """A digest of what determines inference: parameters, vocabulary and every array."""
    digest = hashlib.sha256()
    core = {k: header[k] for k in ("format", "params", "vocab", "tokenizer")}
    digest.update(json.dumps(core, sort_keys=True).encode())
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(f"\0{name}:{array.dtype.str}:{array.shape}\0".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def save_model(model: Any, folder: str | os.PathLike, *, tokenizer: str, provenance: Mapping[str, Any]) -> str:
    """Write `model` to `folder` (created, or replaced whole); returns the content sha256."""
    import gensim

    folder = Path(folder)
    vocab = [[word, int(model.wv.get_vecattr(word, "count"))] for word in model.wv.index_to_key]
    header: dict[str, Any] = {
        "format": FORMAT,
        "params": model_params(model),
        "vocab": vocab,
        "tokenizer": tokenizer,
        "corpus_count": int(model.corpus_count),
        "gensim_version": gensim.__version__,
        "provenance": dict(provenance),
    }
    arrays = _arrays(model)
    header["content_sha256"] = content_sha256(header, arrays)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        (tmp / "doc2vec.json").write_text(json.dumps(header), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.replace(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return header["content_sha256"]


def load_model(folder: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """A gensim Doc2Vec ready for inference, and the folder's header (with content_sha256)."""
    from gensim.models.doc2vec import Doc2Vec

    folder = Path(folder)
    header_file = folder / "doc2vec.json"
    if not header_file.is_file():
        raise DataFormatError(
            f"{folder} is not a Doc2Vec model saved by fico-features (no doc2vec.json). gensim .model pickles are "
            "not opened: load them yourself and re-save with fico_features.doc2vec_pipeline.Doc2VecPipeline.save"
        )
    try:
        header = json.loads(header_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{header_file}: not valid JSON ({exc})") from None
    if header.get("format") != FORMAT:
        raise DataFormatError(f"{header_file}: format {header.get('format')!r}, expected {FORMAT!r}")
    params = header["params"]
    vocab = header["vocab"]
    names = ["word_vectors", "sample_int"] + (["syn1neg", "cum_table"] if params["negative"] else [])
    names += ["syn1"] if params["hs"] else []
    arrays = {}
    for name in names:
        try:
            arrays[name] = np.load(folder / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{folder / (name + '.npy')}: cannot read ({exc})") from None
    if content_sha256(header, arrays) != header.get("content_sha256"):
        raise DataFormatError(f"{folder}: contents do not match the recorded content_sha256 (modified or corrupt)")

    kwargs = {k: params[k] for k in MODEL_PARAMS if k in params}
    model = Doc2Vec(workers=1, **kwargs)
    # gensim sorts by descending count and puts the LATER-inserted word first among equal counts
    # (np.lexsort on -index): inserting in reverse saved order rebuilds the saved indices.
    model.build_vocab_from_freq(
        {word: count for word, count in reversed(vocab)}, corpus_count=header.get("corpus_count")
    )
    if list(model.wv.index_to_key) != [word for word, _ in vocab]:
        raise DataFormatError(f"{folder}: the vocabulary did not rebuild in its saved order")
    expected = (len(vocab), params["vector_size"])
    if arrays["word_vectors"].shape != expected:
        raise DataFormatError(
            f"{folder}: word_vectors.npy has shape {arrays['word_vectors'].shape}, expected {expected}"
        )
    model.wv.vectors = arrays["word_vectors"].astype(np.float32, copy=True)
    model.wv.expandos["sample_int"] = arrays["sample_int"].astype(np.uint32, copy=True)
    if params["negative"]:
        model.syn1neg = arrays["syn1neg"].astype(np.float32, copy=True)
        model.cum_table = arrays["cum_table"].astype(np.uint32, copy=True)
    if params["hs"]:
        model.syn1 = arrays["syn1"].astype(np.float32, copy=True)
    return model, header
