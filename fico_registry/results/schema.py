"""Results schema: the pydantic models of a `RunResult` file and the checks between their fields.

A `RunResult` says which model (name, plugin distribution and version, config, checkpoint
sha256) was evaluated on which ground truth (dataset, split, corpus content hash) under which
protocol (measure, ties, mAP variant, ks, re-rank k), what it scored (fractions in [0, 1]; ranks
1-based; `null` where undefined, never NaN), what it cost, and on what hardware and package
versions. Submissions to the leaderboard are RunResults with an `evidence` block naming the
embedding or score files the numbers can be recomputed from.

Reading files and building results from a Report live in `record`, other formats in `exporters`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
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
    field_validator,
    model_validator,
)

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
    judged: (
        dict[Annotated[str, Field(max_length=100)], dict[Direction, dict[str, float | int | str | None] | None]] | None
    ) = Field(None, max_length=20)

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
                        raise ValueError(
                            f"unknown judged metric {key!r} (expected R@K, R-P, mAP@R, NDCG@K, MRR@K, judged_queries, "
                            "gain)"
                        )
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
            raise ValueError(
                f"similarity evidence needs an i2t file (and optionally t2i); got {sorted(given) or 'none'}"
            )
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


def write_text_atomic(target: Path, text: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
