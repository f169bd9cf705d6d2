"""Build a submission folder: the claimed metrics (submission.json) and the evidence they come from.

The metrics are computed here with the standard evaluator and the board's protocol, so what a
submitter claims is exactly what the board will recompute from the same files. Inputs are
.npy / .npz (read with allow_pickle=False) or .safetensors, never torch pickles; evidence is
written as .npy or .safetensors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import DataFormatError, OptionError
from fico_registry.leaderboard import evidence as ev
from fico_registry.leaderboard import standard
from fico_registry.leaderboard.verify import SUBMISSION_FILE
from fico_registry.results.record import (
    Costs,
    Evidence,
    EvidenceFile,
    RunResult,
    costs_from_report,
    from_report,
    read_result,
    write_result,
)

MODEL_FIELDS = (
    "family",
    "description",
    "url",
    "paper",
    "distribution",
    "version",
    "config_name",
    "config",
    "checkpoint_sha256",
    "checkpoint_source",
)
INPUT_SUFFIXES = (".npy", ".npz", ".safetensors")


def _array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, (str, os.PathLike)):
        from fico_registry.data.arrays import read_array, split_key

        path, _ = split_key(value)
        if path.suffix.lower() not in INPUT_SUFFIXES:
            raise OptionError(
                f"{name}: {path.name} is not .npy, .npz or .safetensors; submissions never unpickle (torch .pt files "
                "are pickles): save tensors with safetensors.torch.save_file({'x': t}, 'x.safetensors') or numpy"
            )
        value = read_array(value, mmap=False)
    return ev.as_numeric_array(value, name)


def _provenance(report: Any, corpus: Any) -> Any:
    """A Report (or the path of a `fico evaluate -o` JSON) whose model provenance and costs to carry over."""
    if report is None:
        return None
    if isinstance(report, (str, os.PathLike)):
        from fico_registry.evaluator.report import Report
        from fico_registry.results.record import loads_strict

        path = Path(report)
        data = loads_strict(path.read_text(encoding="utf-8"), str(path))
        if not isinstance(data, dict) or "instance" not in data:
            raise DataFormatError(f"{path}: not a fico report (write one with `fico evaluate ... -o report.json`)")
        report = Report.from_dict(data)
    corpus_block = report.corpus or {}
    if corpus_block.get("content_hash") and corpus_block["content_hash"] != corpus.content_hash:
        raise OptionError(
            f"the report was made on corpus {corpus_block.get('name')}/{corpus_block.get('split')} "
            f"({corpus_block['content_hash'][:12]}), not on {corpus.name}/{corpus.split} ({corpus.short_hash})"
        )
    return report


def _model_fields(model_name: str, output: str, provenance: Any, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = {}
    prov = (provenance.model or {}) if provenance is not None else {}
    if prov:
        checkpoint = prov.get("checkpoint") or {}
        info.update(
            family=prov.get("family"),
            distribution=prov.get("distribution"),
            version=prov.get("version"),
            config_name=prov.get("config_name"),
            config=prov.get("config") or {},
            checkpoint_sha256=checkpoint.get("sha256"),
            checkpoint_source=checkpoint.get("source"),
        )
    elif "family" not in (extra or {}):
        info["family"] = _registered_family(model_name)
    for key, value in (extra or {}).items():
        if key not in MODEL_FIELDS:
            raise OptionError(f"unknown model field {key!r}; use one of {', '.join(MODEL_FIELDS)}")
        if value is not None:
            info[key] = value
    info["name"] = model_name
    info["output"] = output
    return {k: v for k, v in info.items() if v is not None}


def _registered_family(name: str) -> str | None:
    """The family on the model card, when the submitted name is a registered model."""
    from fico_registry.errors import FicoError
    from fico_registry.plugin_api.registry import get_model_spec

    try:
        return str(get_model_spec(name).family)
    except FicoError:  # not a registered name: the submitter says it with --family, or it stays unknown
        return None


def make_submission(
    corpus: Any,
    model_name: str,
    out_dir: str | os.PathLike,
    *,
    images: Any = None,
    texts: Any = None,
    measure: str = "cosine",
    bits: int | None = None,
    i2t: Any = None,
    t2i: Any = None,
    model: Mapping[str, Any] | None = None,
    report: Any = None,
    submitter: str | None = None,
    evidence_format: str = "npy",
    device: str = "auto",
) -> RunResult:
    """Evaluate embeddings (images + texts) or score matrices (i2t [+ t2i]) on `corpus` and write
    a submission folder `out_dir`: submission.json plus the evidence files.

    Arrays may be numpy arrays, tensors, or paths of .npy / .npz / .safetensors files ('file.npz:key'
    picks one array of several); files are read without unpickling (allow_pickle=False).
    `model` adds card fields (family, description, url, paper, distribution, version, config,
    checkpoint_sha256, ...); `report` (a Report or `fico evaluate -o` JSON of the same model on
    the same corpus) carries its provenance and costs over.
    """
    kind = _evidence_kind(images, texts, i2t, t2i, measure, bits)
    folder = Path(out_dir)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OptionError(f"{folder} exists and is not an empty folder; choose a new output folder")
    provenance = _provenance(report, corpus)

    arrays = _read_evidence(kind, {"images": images, "texts": texts, "i2t": i2t, "t2i": t2i})
    embeddings = kind == "embeddings"
    ev.check_shapes(
        kind,
        {k: a.shape for k, a in arrays.items()},
        corpus.n_images,
        corpus.n_captions,
        measure if embeddings else None,
    )
    result_report = standard.evaluate_evidence(kind, arrays, corpus, measure=measure, bits=bits, device=device)
    output = ("binary" if measure == "hamming" else "continuous") if embeddings else "similarity"

    # validate everything the submitter typed before writing a single file
    model_info = _model_fields(model_name, output, provenance, model)
    result = from_report(result_report, model=model_info, corpus=corpus, submitter=submitter)
    if provenance is not None:
        result = _with_provenance(result, provenance)
    if evidence_format not in ("npy", "safetensors"):
        raise OptionError(f"evidence format must be 'npy' or 'safetensors', got {evidence_format!r}")

    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, EvidenceFile] = {
        role: ev.write_evidence(array, folder, role, evidence_format) for role, array in arrays.items()
    }
    result = RunResult.model_validate({**result.model_dump(), "evidence": Evidence(kind=kind, **files).model_dump()})
    write_result(result, folder / SUBMISSION_FILE)
    return read_result(folder / SUBMISSION_FILE)  # what the board will read


def _evidence_kind(images: Any, texts: Any, i2t: Any, t2i: Any, measure: str, bits: int | None) -> str:
    """'embeddings' or 'similarity': which evidence make_submission() was given, checked for completeness."""
    embeddings = images is not None or texts is not None
    similarity = i2t is not None or t2i is not None
    if embeddings == similarity:
        raise OptionError(
            "give embeddings (images and texts) or similarity scores (i2t, optionally t2i), not both or neither"
        )
    if embeddings and (images is None or texts is None):
        raise OptionError("embeddings need both images and texts")
    if similarity and i2t is None:
        raise OptionError("similarity scores need i2t (t2i is optional: the board transposes i2t when it is absent)")
    if similarity and (measure != "cosine" or bits is not None):
        raise OptionError("measure and bits apply to embeddings; scores are used as given (higher = more similar)")
    return "embeddings" if embeddings else "similarity"


def _read_evidence(kind: str, given: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The evidence arrays of `kind` (images + texts, or i2t [+ t2i]) read from arrays or files."""
    roles = ("images", "texts") if kind == "embeddings" else ("i2t", "t2i")
    arrays = {role: _array(given[role], role) for role in roles if given[role] is not None}
    for name, array in arrays.items():
        if array.ndim == 0:
            raise DataFormatError(f"{name} is a scalar, not an array")
    return arrays


def _with_provenance(result: RunResult, provenance: Any) -> RunResult:
    """Costs and run settings (batch size, re-rank depth) of the model's own evaluation."""
    costs: Costs = costs_from_report(provenance)
    settings = result.settings.model_copy(
        update={
            k: provenance.settings.get(k)
            for k in ("rerank_k", "outside_topk", "batch_size")
            if provenance.settings.get(k) is not None
        }
    )
    return RunResult.model_validate(
        {**result.model_dump(), "costs": costs.model_dump(), "settings": settings.model_dump()}
    )
