"""Results: the versioned, validated record of one evaluation run, and its exporters.

A `RunResult` says which model (name, plugin distribution and version, config, checkpoint
sha256) was evaluated on which ground truth (dataset, split, corpus content hash) under which
protocol (measure, ties, mAP variant, ks, re-rank k), what it scored (fractions in [0, 1]; ranks
1-based; `null` where undefined, never NaN), what it cost, and on what hardware and package
versions. Submissions to the leaderboard are RunResults with an `evidence` block naming the
embedding or score files the numbers can be recomputed from.

Files are strict JSON: NaN and Infinity are refused when reading and never written. Exporters
turn a RunResult into MTEB `TaskResult` files and CLIP_benchmark result JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from fico_registry.errors import DataFormatError

RESULT_FORMAT: Final = "fico-result"
SCHEMA_VERSION: Final = 1
MAX_RESULT_BYTES = 1 << 20  # a result file is metadata and a few numbers; 1 MiB is plenty

Direction = Literal["i2t", "t2i"]
DIRECTIONS: tuple[Direction, ...] = ("i2t", "t2i")
EMBEDDING_MEASURES = ("cosine", "inner_product", "euclidean", "hamming", "maxsim")

_SHA256 = r"^[0-9a-f]{64}$"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tab and newline are allowed in free text
_EVIDENCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Sha256 = Annotated[str, Field(pattern=_SHA256)]


def _no_control(value: str | None, *, single_line: bool = False) -> str | None:
    if value is None:
        return None
    if _CONTROL.search(value) or (single_line and ("\n" in value or "\r" in value)):
        raise ValueError("must not contain control characters" + (" or line breaks" if single_line else ""))
    return value


def check_http_url(value: str | None) -> str | None:
    """An absolute http(s) URL, or None. javascript:, data: and relative links are refused."""
    if value is None:
        return None
    _no_control(value, single_line=True)
    if any(c.isspace() for c in value):
        raise ValueError("a URL must not contain spaces")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an absolute http:// or https:// URL, got scheme {parts.scheme or '(none)'!r}")
    return value


class _Strict(BaseModel):
    """Unknown keys, NaN and infinity are errors: a typo must not silently drop a field."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=4000, populate_by_name=True)


class ModelInfo(_Strict):
    name: str = Field(min_length=1, max_length=200)
    family: Literal["vlp", "fg", "cg"] | None = None
    output: Literal["continuous", "binary", "similarity", "cascade"] | None = None
    distribution: str | None = Field(None, max_length=200, description="plugin distribution (pip name)")
    version: str | None = Field(None, max_length=100, description="plugin distribution version")
    config_name: str | None = Field(None, max_length=200)
    config: dict[str, JsonValue] = Field(default_factory=dict)
    checkpoint_sha256: Sha256 | None = None
    checkpoint_source: str | None = Field(None, max_length=1000)
    description: str | None = Field(None, max_length=2000)
    url: str | None = Field(None, max_length=500)
    paper: str | None = Field(None, max_length=500)

    @field_validator("name", "distribution", "version", "config_name", "checkpoint_source", "paper")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        return _no_control(value, single_line=True)

    @field_validator("name")
    @classmethod
    def _visible(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("description")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return _no_control(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_http_url(value)


class CorpusInfo(_Strict):
    dataset: str = Field(min_length=1, max_length=200)
    split: str = Field(min_length=1, max_length=200)
    content_hash: Sha256
    n_images: PositiveInt | None = None
    n_texts: PositiveInt | None = None
    n_classes: NonNegativeInt | None = None
    duplication: PositiveInt = 1

    @field_validator("dataset", "split")
    @classmethod
    def _single_line(cls, value: str) -> str:
        _no_control(value, single_line=True)
        return value


class Settings(_Strict):
    measure: str = Field(min_length=1, max_length=100)
    ties: Literal["expected", "optimistic", "pessimistic"]
    map_variant: Literal["fico", "apk", "dcmh"] | None = None
    recall_ks: list[PositiveInt] = Field(min_length=1, max_length=20)
    map_ks: list[PositiveInt | None] = Field(default_factory=list, max_length=20)
    rerank_k: PositiveInt | None = None
    outside_topk: Literal["keep", "exclude"] | None = None
    bits: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    device: str | None = Field(None, max_length=100)


def _map_key(k: int | None) -> str:
    return "mAP@N" if k is None else f"mAP@{k}"


class Metrics(_Strict):
    """Per direction, as the evaluator's Report has them: R@K / MedR / MeanR and mAP@K / PR11."""

    instance: dict[Direction, dict[str, float | None]]
    category: dict[Direction, dict[str, float | int | list[float | None] | None]] | None = None
    # judged relevance (ECCV Caption, CxC, qrels): set name -> direction -> R@K, R-P, mAP@R, NDCG@K,
    # MRR@K, judged_queries, gain; a direction the set does not judge is null. Absent in older results.
    judged: dict[Annotated[str, Field(max_length=100)], dict[Direction, dict[str, float | int | str | None] | None]] | None = Field(
        None, max_length=20
    )

    @field_validator("judged")
    @classmethod
    def _judged(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        if value is None:
            return None
        for name, directions in value.items():
            _both_directions(directions, f"judged {name!r}")
            for direction, values in directions.items():
                for key, number in (values or {}).items():
                    where = f"judged {name} {direction} {key}"
                    if re.fullmatch(r"(R|NDCG|MRR)@[1-9][0-9]*|R-P|mAP@R", key):
                        _fraction(number, where)
                    elif key == "judged_queries":
                        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                            raise ValueError(f"{where} must be a non-negative integer")
                    elif key == "gain":
                        if number not in ("linear", "exponential"):
                            raise ValueError(f"{where} must be 'linear' or 'exponential'")
                    else:
                        raise ValueError(f"unknown judged metric {key!r} (expected R@K, R-P, mAP@R, NDCG@K, MRR@K, judged_queries, gain)")
        return value

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
        _both_directions(value, "instance")
        for direction, values in value.items():
            for key, number in values.items():
                where = f"{direction} {key}"
                if re.fullmatch(r"R@[1-9][0-9]*", key):
                    _fraction(number, where)
                elif key in ("MedR", "MeanR"):
                    if number is not None and not number >= 1:
                        raise ValueError(f"{where} is a 1-based rank and must be >= 1, got {number}")
                else:
                    raise ValueError(f"unknown instance metric {key!r} (expected R@K, MedR, MeanR)")
        return value

    @field_validator("category")
    @classmethod
    def _category(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        if value is None:
            return None
        _both_directions(value, "category")
        for direction, values in value.items():
            for key, number in values.items():
                where = f"{direction} {key}"
                if re.fullmatch(r"mAP@([1-9][0-9]*|N)", key):
                    if isinstance(number, list):
                        raise ValueError(f"{where} must be a number or null")
                    _fraction(number, where)
                elif key == "PR11":
                    if number is not None:
                        if not isinstance(number, list) or len(number) != 11:
                            raise ValueError(f"{where} must be a list of 11 precisions (recall 0, 0.1, ..., 1) or null")
                        for item in number:
                            _fraction(item, where)
                elif key == "PR11_queries":
                    if number is not None and (
                        isinstance(number, (list, bool)) or not float(number).is_integer() or number < 0
                    ):
                        raise ValueError(f"{where} must be a non-negative integer")
                else:
                    raise ValueError(f"unknown category metric {key!r} (expected mAP@K, mAP@N, PR11, PR11_queries)")
        return value


def _both_directions(value: Mapping[str, Any], what: str) -> None:
    missing = [d for d in DIRECTIONS if d not in value]
    if missing:
        raise ValueError(f"{what} metrics need both directions; missing {', '.join(missing)}")


def _fraction(number: Any, where: str) -> None:
    if number is None:
        return
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ValueError(f"{where} must be a number or null")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{where} is a fraction and must lie in [0, 1], got {number} (percentages are not accepted)")


class EncodeCost(_Strict):
    seconds: NonNegativeFloat | None = None
    items: NonNegativeInt | None = None
    items_per_s: NonNegativeFloat | None = None
    from_cache: bool | None = None
    batch_size: PositiveInt | None = None
    bytes: NonNegativeInt | None = None
    bytes_per_item: NonNegativeFloat | None = None


class QueryTimeCost(_Strict):
    kind: str | None = Field(None, max_length=100)
    calls: NonNegativeInt | None = None
    pairs: NonNegativeInt | None = None
    seconds: NonNegativeFloat | None = None


class Costs(_Strict):
    encode: dict[Literal["images", "texts"], EncodeCost] = Field(default_factory=dict)
    query_time: QueryTimeCost | None = None
    evaluation_seconds: NonNegativeFloat | None = None


class Hardware(_Strict):
    device: str | None = Field(None, max_length=200)
    cpu: str | None = Field(None, max_length=200)
    cpu_count: PositiveInt | None = None
    gpu: str | None = Field(None, max_length=200)
    gpu_count: NonNegativeInt | None = None
    ram_gb: NonNegativeFloat | None = None
    platform: str | None = Field(None, max_length=200)
    python: str | None = Field(None, max_length=100)


class EvidenceFile(_Strict):
    """One array file of a submission, in the submission folder itself (no sub-folders)."""

    file: str = Field(max_length=128)
    format: Literal["npy", "safetensors"]
    tensor: str | None = Field(None, max_length=128, description="tensor name inside a .safetensors file")
    sha256: Sha256
    shape: list[NonNegativeInt] = Field(min_length=1, max_length=3)
    dtype: str = Field(max_length=20)
    bytes: NonNegativeInt

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _EVIDENCE_NAME.fullmatch(value) or ".." in value:
            raise ValueError(
                f"{value!r} is not a plain file name; evidence files lie in the submission folder itself "
                "(letters, digits, '.', '_', '-'; no paths)"
            )
        return value

    @model_validator(mode="after")
    def _suffix(self) -> EvidenceFile:
        if not self.file.lower().endswith("." + self.format):
            raise ValueError(f"{self.file}: a {self.format} file must end in .{self.format}")
        return self


CASCADE_ROLES = ("images", "texts", "i2t_pairs", "i2t_scores", "t2i_pairs", "t2i_scores")
EVIDENCE_ROLES = ("images", "texts", "i2t", "t2i", "i2t_pairs", "i2t_scores", "t2i_pairs", "t2i_scores")
ModelName = Annotated[str, Field(min_length=1, max_length=200)]


class CascadeInfo(_Strict):
    """A cascade entry: FIRST screens (its outputs are the images / texts files, compared by
    first_measure), RERANK re-orders each query's top k (its scores of the re-ranked pairs are the
    sparse *_pairs / *_scores files). k "N" re-ranks every candidate."""

    first: ModelName
    rerank: ModelName
    k: PositiveInt | Literal["N"]
    first_measure: Literal["cosine", "inner_product", "euclidean", "hamming", "maxsim"]
    first_bits: PositiveInt | None = None

    @field_validator("first", "rerank")
    @classmethod
    def _single_line(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return _no_control(value, single_line=True)  # type: ignore[return-value]

    def label(self) -> str:
        """How the board names the pair, e.g. 'ucch -> scan @100'."""
        return f"{self.first} -> {self.rerank} @{self.k}"


class Evidence(_Strict):
    """The arrays the claimed metrics are recomputed from."""

    kind: Literal["embeddings", "similarity", "cascade"]
    images: EvidenceFile | None = None
    texts: EvidenceFile | None = None
    i2t: EvidenceFile | None = None
    t2i: EvidenceFile | None = None
    # cascade: (P, 2) int (query, candidate) rows and (P,) float re-ranker scores per direction
    i2t_pairs: EvidenceFile | None = None
    i2t_scores: EvidenceFile | None = None
    t2i_pairs: EvidenceFile | None = None
    t2i_scores: EvidenceFile | None = None
    cascade: CascadeInfo | None = None

    @model_validator(mode="after")
    def _roles(self) -> Evidence:
        given = set(self.files())
        if self.kind == "embeddings" and given != {"images", "texts"}:
            raise ValueError(f"embeddings evidence needs exactly images and texts files; got {sorted(given) or 'none'}")
        if self.kind == "similarity" and not ({"i2t"} <= given <= {"i2t", "t2i"}):
            raise ValueError(f"similarity evidence needs an i2t file (and optionally t2i); got {sorted(given) or 'none'}")
        if self.kind == "cascade" and given != set(CASCADE_ROLES):
            got = sorted(given) or "none"
            raise ValueError(f"cascade evidence needs exactly {', '.join(CASCADE_ROLES)} files; got {got}")
        if (self.kind == "cascade") != (self.cascade is not None):
            raise ValueError("evidence.cascade (first, rerank, k, first_measure) goes with kind 'cascade' only")
        names = [f.file for f in self.files().values()]
        if len(set(names)) != len(names):
            raise ValueError("each evidence role needs its own file")
        return self

    def files(self) -> dict[str, EvidenceFile]:
        return {role: f for role in EVIDENCE_ROLES if (f := getattr(self, role)) is not None}


class RunResult(_Strict):
    format: Literal["fico-result"] = RESULT_FORMAT
    schema_version: Literal[1] = SCHEMA_VERSION
    model: ModelInfo
    corpus: CorpusInfo
    settings: Settings
    metrics: Metrics
    costs: Costs = Field(default_factory=Costs)
    hardware: Hardware = Field(default_factory=Hardware)
    packages: dict[str, Annotated[str, Field(max_length=100)]] = Field(default_factory=dict, max_length=100)
    tool_version: str | None = Field(None, max_length=100)
    date: AwareDatetime
    submitter: str | None = Field(None, max_length=200)
    evidence: Evidence | None = None

    @field_validator("submitter")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        return _no_control(value, single_line=True)

    @model_validator(mode="after")
    def _consistent(self) -> RunResult:
        s = self.settings
        for direction in DIRECTIONS:
            want = {f"R@{k}" for k in s.recall_ks} | {"MedR", "MeanR"}
            have = set(self.metrics.instance[direction])
            if have != want:
                raise ValueError(_key_mismatch(f"metrics.instance.{direction}", want, have))
        if self.metrics.category is not None:
            if s.map_variant is None or not s.map_ks:
                raise ValueError("category metrics need settings.map_variant and settings.map_ks")
            for direction in DIRECTIONS:
                want = {_map_key(k) for k in s.map_ks}
                have = {k for k in self.metrics.category[direction] if k.startswith("mAP@")}
                if have != want:
                    raise ValueError(_key_mismatch(f"metrics.category.{direction}", want, have))
        elif s.map_ks:
            raise ValueError(
                "settings.map_ks is set but there are no category metrics (set map_ks to [] without labels)"
            )
        if self.evidence is not None:
            self._check_evidence(self.evidence)
        return self

    def _check_evidence(self, evidence: Evidence) -> None:
        measure = self.settings.measure
        output = self.model.output
        if evidence.kind == "cascade":
            if measure != "cascade":
                raise ValueError(f"cascade evidence is evaluated as settings.measure 'cascade', got {measure!r}")
            expected = "cascade"
        elif evidence.kind == "embeddings":
            if measure not in EMBEDDING_MEASURES:
                raise ValueError(
                    f"embeddings evidence needs settings.measure in {', '.join(EMBEDDING_MEASURES)}, got {measure!r}"
                )
            expected = "binary" if measure == "hamming" else "continuous"
        else:
            if measure != "precomputed":
                raise ValueError(f"similarity evidence is evaluated as settings.measure 'precomputed', got {measure!r}")
            expected = "similarity"
        if output is not None and output != expected:
            raise ValueError(
                f"model.output is {output!r} but the evidence ({evidence.kind}, measure {measure}) "
                f"makes it {expected!r}"
            )

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)
        if path is not None:
            write_text_atomic(Path(path), text + "\n")
        return text

    # -- derived numbers used by tables --------------------------------------------------------
    def rsum(self) -> float | None:
        """Sum of R@1, R@5, R@10 over both directions, in percent (the usual ITR headline)."""
        values = [self.metrics.instance[d].get(f"R@{k}") for d in DIRECTIONS for k in (1, 5, 10)]
        present = [v for v in values if v is not None]
        if len(present) != len(values):
            return None
        return 100.0 * sum(present)


def _key_mismatch(where: str, want: set[str], have: set[str]) -> str:
    parts = []
    if want - have:
        parts.append(f"missing {', '.join(sorted(want - have))}")
    if have - want:
        parts.append(f"unexpected {', '.join(sorted(have - want))}")
    return f"{where} does not match the settings' ks: " + "; ".join(parts)


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
        raise DataFormatError(f"{where}: not a fico result (\"format\" must be {RESULT_FORMAT!r})")
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


def write_text_atomic(target: Path, text: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target


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
        "metrics": {"instance": data["instance"], "category": data.get("category"), "judged": _judged_metrics(data.get("judged"))},
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


# -- exporters ----------------------------------------------------------------------------------
_MTEB_DATASET_NAMES = {
    "flickr30k": "Flickr30k", "flickr8k": "Flickr8k", "coco": "MSCOCO", "mscoco": "MSCOCO", "nus-wide": "NUSWIDE",
}


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)


def mteb_task_name(result: RunResult, direction: Direction, prefix: str = "Fico") -> str:
    """e.g. FicoFlickr30kT2IRetrieval. The prefix keeps these apart from MTEB's own (M-BEIR based)
    Flickr30k / MSCOCO tasks, which use other splits and candidate pools: not comparable numbers."""
    dataset = _MTEB_DATASET_NAMES.get(result.corpus.dataset.lower(), _camel(result.corpus.dataset))
    return f"{prefix}{dataset}{direction.upper()}Retrieval"


def _hit_key(metric: str) -> str | None:
    match = re.fullmatch(r"R@(\d+)", metric)
    return f"hit_rate_at_{match.group(1)}" if match else None


def to_mteb(
    result: RunResult, *, prefix: str = "Fico", languages: Sequence[str] = ("eng-Latn",)
) -> dict[str, dict[str, Any]]:
    """MTEB TaskResult documents, one per direction, keyed by task name.

    Our R@K ("at least one positive in the top K") is MTEB's `hit_rate_at_k`; MTEB's
    `recall_at_k` and `map_at_k` are other quantities and are not filled. MedR, MeanR and the
    category-level mAP@K (label relevance) go in under `fico_`-prefixed keys. `dataset_revision`
    is the corpus content hash, so results on different ground truth never mix; `main_score` is
    the hit rate at the smallest K.
    """
    out: dict[str, dict[str, Any]] = {}
    for direction in DIRECTIONS:
        instance = result.metrics.instance[direction]
        scores: dict[str, Any] = {}
        for key, value in instance.items():
            hit = _hit_key(key)
            if hit:
                scores[hit] = value
        scores["fico_median_rank"] = instance.get("MedR")
        scores["fico_mean_rank"] = instance.get("MeanR")
        if result.metrics.category is not None:
            for key, category_value in result.metrics.category[direction].items():
                if key.startswith("mAP@"):
                    scores[f"fico_category_map_at_{key.split('@')[1].lower()}"] = category_value
        first_k = min(result.settings.recall_ks)
        scores["main_score"] = instance.get(f"R@{first_k}")
        scores["hf_subset"] = "default"
        scores["languages"] = list(languages)
        total = result.costs.evaluation_seconds
        out[mteb_task_name(result, direction, prefix)] = {
            "dataset_revision": result.corpus.content_hash,
            "task_name": mteb_task_name(result, direction, prefix),
            "mteb_version": None,
            "scores": {result.corpus.split: [scores]},
            "evaluation_time": total,
            "kg_co2_emissions": None,
            "date": result.date.timestamp(),
        }
    return out


_MTEB_SIMILARITY = {"cosine": "cosine", "inner_product": "dot", "euclidean": "euclidean", "maxsim": "max_sim"}


def mteb_model_meta(result: RunResult) -> dict[str, Any]:
    """The common fields of MTEB's model_meta.json for this model (unknowns are null)."""
    m = result.model
    return {
        "name": m.name,
        "revision": m.checkpoint_sha256 or m.version,
        "release_date": None,
        "languages": ["eng-Latn"],
        "n_parameters": None,
        "memory_usage_mb": None,
        "max_tokens": None,
        "embed_dim": None,
        "license": None,
        "open_weights": None,
        "public_training_code": None,
        "public_training_data": None,
        "framework": ["PyTorch"],
        "reference": m.url,
        "similarity_fn_name": _MTEB_SIMILARITY.get(result.settings.measure),
        "use_instructions": False,
        "training_datasets": None,
        "modalities": ["image", "text"],
        "is_cross_encoder": m.output == "similarity",
    }


def _path_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "unnamed"


def write_mteb(result: RunResult, root: str | os.PathLike, *, prefix: str = "Fico") -> list[Path]:
    """MTEB's results layout: root/{org__model}/{revision}/{Task}.json + model_meta.json."""
    revision = result.model.checkpoint_sha256 or result.model.version or "no_revision_available"
    folder = Path(root) / _path_part(result.model.name.replace("/", "__")) / _path_part(revision)
    written = []
    for task, doc in to_mteb(result, prefix=prefix).items():
        written.append(write_text_atomic(folder / f"{task}.json", json.dumps(doc, indent=2, allow_nan=False) + "\n"))
    meta = json.dumps(mteb_model_meta(result), indent=2, allow_nan=False) + "\n"
    written.append(write_text_atomic(folder / "model_meta.json", meta))
    return written


def to_clip_benchmark(result: RunResult, *, language: str = "en") -> dict[str, Any]:
    """CLIP_benchmark's zeroshot_retrieval result: image_retrieval = text->image (our t2i),
    text_retrieval = image->text (our i2t); both are "at least one positive in the top K"."""
    metrics: dict[str, Any] = {}
    for key, value in result.metrics.instance["t2i"].items():
        if _hit_key(key):
            metrics[f"image_retrieval_recall@{key[2:]}"] = value
    for key, value in result.metrics.instance["i2t"].items():
        if _hit_key(key):
            metrics[f"text_retrieval_recall@{key[2:]}"] = value
    m = result.model
    return {
        "dataset": result.corpus.dataset,
        "model": m.name,
        "pretrained": m.checkpoint_sha256 or m.checkpoint_source or m.config_name or "",
        "task": "zeroshot_retrieval",
        "metrics": metrics,
        "language": language,
    }


def clip_benchmark_filename(result: RunResult, *, language: str = "en") -> str:
    """CLIP_benchmark's default output name: {dataset}_{pretrained}_{model}_{language}_{task}.json"""
    doc = to_clip_benchmark(result, language=language)
    parts = (doc["dataset"], doc["pretrained"] or "none", doc["model"], language, doc["task"])
    return "_".join(_path_part(p) for p in parts) + ".json"


def write_clip_benchmark(result: RunResult, folder: str | os.PathLike, *, language: str = "en") -> Path:
    doc = to_clip_benchmark(result, language=language)
    target = Path(folder) / clip_benchmark_filename(result, language=language)
    return write_text_atomic(target, json.dumps(doc, allow_nan=False) + "\n")
