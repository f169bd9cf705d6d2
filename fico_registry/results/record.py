"""Results: reading, validating and writing `RunResult` files, and building one from a Report.

The models live in `results.schema`, the MTEB / CLIP_benchmark exporters in `results.exporters`;
both are re-exported here, so `from fico_registry.results.record import RunResult, write_mteb`
keeps working. Files are strict JSON: NaN and Infinity are refused when reading and never written.
"""

import contextlib
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fico_registry.errors import DataFormatError
from fico_registry.results.exporters import (
    clip_benchmark_filename,
    mteb_model_meta,
    mteb_task_name,
    to_clip_benchmark,
    to_mteb,
    write_clip_benchmark,
    write_mteb,
)
from fico_registry.results.schema import (
    CASCADE_ROLES,
    DIRECTIONS,
    EMBEDDING_MEASURES,
    EVIDENCE_ROLES,
    MAX_RESULT_BYTES,
    RESULT_FORMAT,
    SCHEMA_VERSION,
    CascadeInfo,
    CorpusInfo,
    Costs,
    Direction,
    EncodeCost,
    Evidence,
    EvidenceFile,
    Fraction,
    Hardware,
    Metrics,
    ModelInfo,
    ModelName,
    QueryTimeCost,
    RunResult,
    Settings,
    Sha256,
    check_http_url,
    write_text_atomic,
)

__all__ = [  # the schema and exporter names are re-exported: callers import them from here
    "CASCADE_ROLES",
    "DEFAULT_PACKAGES",
    "DIRECTIONS",
    "EMBEDDING_MEASURES",
    "EVIDENCE_ROLES",
    "MAX_RESULT_BYTES",
    "RESULT_FORMAT",
    "SCHEMA_VERSION",
    "CascadeInfo",
    "CorpusInfo",
    "Costs",
    "Direction",
    "EncodeCost",
    "Evidence",
    "EvidenceFile",
    "Fraction",
    "Hardware",
    "Metrics",
    "ModelInfo",
    "ModelName",
    "QueryTimeCost",
    "RunResult",
    "Settings",
    "Sha256",
    "check_http_url",
    "clip_benchmark_filename",
    "costs_from_report",
    "describe_validation_error",
    "detect_hardware",
    "from_report",
    "loads_strict",
    "mteb_model_meta",
    "mteb_task_name",
    "package_versions",
    "read_result",
    "result_from_dict",
    "to_clip_benchmark",
    "to_mteb",
    "write_clip_benchmark",
    "write_mteb",
    "write_result",
    "write_text_atomic",
]


# -- reading and writing --------------------------------------------------------------------------
def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; write null for an undefined value")


def loads_strict(text: str | bytes, where: str = "JSON") -> Any:
    """json.loads that refuses NaN / Infinity (Python writes them by default; strict JSON has none)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise DataFormatError(f"{where}: not valid strict JSON ({exc})") from None


def describe_validation_error(exc: ValidationError, limit: int = 6) -> str:
    """The first few pydantic errors as 'field.path: message' lines joined by '; '."""
    parts = []
    for error in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in error.get("loc", ())) or "(top level)"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {message}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def result_from_dict(data: Any, where: str = "result") -> RunResult:
    """Validate a parsed result document; errors name the fields to fix."""
    if not isinstance(data, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != RESULT_FORMAT:
        raise DataFormatError(f'{where}: not a fico result ("format" must be {RESULT_FORMAT!r})')
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise DataFormatError(
            f"{where}: schema_version {version} is newer than this fico-registry reads ({SCHEMA_VERSION}); upgrade"
        )
    try:
        return RunResult.model_validate(data)
    except ValidationError as exc:
        raise DataFormatError(f"{where}: {describe_validation_error(exc)}") from None


def read_result(path: str | os.PathLike, max_bytes: int = MAX_RESULT_BYTES) -> RunResult:
    """Read and validate a result file (strict UTF-8 JSON, no NaN / Infinity, at most max_bytes)."""
    target = Path(path)
    size = target.stat().st_size
    if size > max_bytes:
        raise DataFormatError(f"{target}: {size} bytes is over the {max_bytes}-byte limit for a result file")
    raw = target.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{target}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return result_from_dict(loads_strict(text, str(target)), str(target))


def write_result(result: RunResult, path: str | os.PathLike) -> Path:
    result.to_json(path)
    return Path(path)


# -- from a Report ---------------------------------------------------------------------------------
def detect_hardware(device: str | None = None) -> Hardware:
    """CPU, GPU (when torch is already imported and sees one), RAM and platform of this machine."""
    ram_gb = None
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not every OS has these
        ram_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    gpu = gpu_count = None
    torch = sys.modules.get("torch")  # never import torch just to describe the machine
    if torch is not None:
        try:
            gpu_count = int(torch.cuda.device_count())
            if gpu_count:
                gpu = str(torch.cuda.get_device_name(0))
        except Exception:  # a broken CUDA setup must not stop a report from being written
            gpu_count = None
    return Hardware(
        device=device,
        cpu=(platform.processor() or platform.machine() or None),
        cpu_count=os.cpu_count(),
        gpu=gpu,
        gpu_count=gpu_count,
        ram_gb=ram_gb,
        platform=platform.platform(terse=True)[:200],
        python=platform.python_version(),
    )


DEFAULT_PACKAGES = ("fico-registry", "numpy", "torch", "faiss-cpu", "transformers", "open_clip_torch", "timm")


def package_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Installed versions of the packages that can change the numbers (missing ones are left out)."""
    from fico_registry.runtime.provenance import package_versions as installed

    return {k: v for k, v in installed((*DEFAULT_PACKAGES, *extra), skip_missing=True).items() if v is not None}


def _corpus_info(corpus: Any) -> CorpusInfo | dict[str, Any]:
    if isinstance(corpus, CorpusInfo):
        return corpus
    if isinstance(corpus, Mapping):  # validated as RunResult.corpus
        data = dict(corpus)
        if "dataset" not in data and "name" in data:  # a Report's corpus block
            data["dataset"] = data.pop("name")
        return _known(CorpusInfo, data)
    # a fico_registry.data.Corpus
    return CorpusInfo(
        dataset=corpus.name,
        split=corpus.split,
        content_hash=corpus.content_hash,
        n_images=corpus.n_images,
        n_texts=corpus.n_captions,
        n_classes=None if corpus.labels is None else int(corpus.labels.shape[1]),
        duplication=corpus.duplication,
    )


def _model_info(provenance: Mapping[str, Any] | None, override: ModelInfo | Mapping[str, Any] | None) -> dict[str, Any]:
    base: dict[str, Any] = {}
    if provenance:  # Model.provenance() as evaluate() puts it in the report
        checkpoint = provenance.get("checkpoint") or {}
        base = {
            "name": provenance.get("name"),
            "family": provenance.get("family"),
            "output": provenance.get("output"),
            "distribution": provenance.get("distribution"),
            "version": provenance.get("version"),
            "config_name": provenance.get("config_name"),
            "config": provenance.get("config") or {},
            "checkpoint_sha256": checkpoint.get("sha256"),
            "checkpoint_source": checkpoint.get("source"),
        }
    if isinstance(override, ModelInfo):
        override = override.model_dump(exclude_unset=True)
    base.update({k: v for k, v in (override or {}).items() if v is not None})
    if not base.get("name"):
        raise DataFormatError("the report names no model: pass model={'name': ...}")
    return {k: v for k, v in base.items() if v is not None}  # validated as RunResult.model


def _known(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a Report block that the schema records (a Report may carry more)."""
    return {k: v for k, v in data.items() if k in model.model_fields}


def costs_from_report(report: Any) -> Costs:
    """The cost block of a Report (encode time and bytes per side, query-time scoring, total seconds)."""
    costs = report.costs or {}
    encode = {
        side: EncodeCost.model_validate(_known(EncodeCost, value))
        for side, value in (costs.get("encode") or {}).items()
    }
    query_time = costs.get("query_time")
    return Costs(
        encode=encode,
        query_time=None if query_time is None else QueryTimeCost.model_validate(_known(QueryTimeCost, query_time)),
        evaluation_seconds=report.settings.get("seconds"),
    )


def _judged_metrics(judged: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A report's judged section without its provenance (the corpus names the judgments)."""
    if not judged:
        return None
    return {name: {d: entry.get(d) for d in DIRECTIONS} for name, entry in judged.items()}


def from_report(
    report: Any,
    *,
    model: ModelInfo | Mapping[str, Any] | None = None,
    corpus: Any = None,
    submitter: str | None = None,
    date: datetime | None = None,
    hardware: Hardware | None = None,
    packages: Mapping[str, str] | None = None,
    evidence: Evidence | None = None,
) -> RunResult:
    """A RunResult from an evaluator Report.

    Reports from `evaluate(model, corpus)` carry the model provenance and corpus; reports from
    `evaluate_embeddings` / `evaluate_similarity` do not, so pass `model={"name": ...}` and
    `corpus=` (a Corpus, CorpusInfo or dict). `model` entries override the report's provenance.
    """
    from fico_registry.evaluator.report import _clean

    corpus_source = corpus if corpus is not None else report.corpus
    if corpus_source is None:
        raise DataFormatError("the report names no corpus: pass corpus= (the Corpus it was evaluated on)")
    data = _clean(report.to_dict())
    provenance = report.model or {}
    model_fields = _model_info(provenance, model)
    document = {
        "model": model_fields,
        "corpus": _corpus_info(corpus_source),
        "settings": _known(Settings, data["settings"]),
        "metrics": {
            "instance": data["instance"],
            "category": data.get("category"),
            "judged": _judged_metrics(data.get("judged")),
        },
        "costs": costs_from_report(report),
        "hardware": hardware or detect_hardware(report.settings.get("device")),
        "packages": (
            dict(packages) if packages is not None else package_versions([model_fields.get("distribution") or ""])
        ),
        "tool_version": _tool_version(),
        "date": date or datetime.now(timezone.utc).replace(microsecond=0),
        "submitter": submitter,
        "evidence": evidence,
    }
    try:  # one validation, so errors name the full field path (model.url, metrics.instance...)
        return RunResult.model_validate(document)
    except ValidationError as exc:
        raise DataFormatError(f"result: {describe_validation_error(exc)}") from None


def _tool_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("fico-registry")
    except metadata.PackageNotFoundError:
        return None
