"""The plugin contract: model cards (data only) and the Encoder / Scorer protocols.

Nothing here imports torch: listing models must stay instant.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fico_registry.errors import SpecError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    Features = torch.Tensor | Mapping[str, torch.Tensor]


class OutputKind(str, Enum):
    """What a model hands to the evaluator."""

    BINARY = "binary"  # hash codes, compared by Hamming distance
    CONTINUOUS = "continuous"  # float embeddings, compared by cosine / inner product / ...
    SIMILARITY = "similarity"  # scores from query-time attention over (image, text) pairs

    def __str__(self) -> str:
        return self.value


class Family(str, Enum):
    """The three model families of the FiCo-ITR comparison."""

    VLP = "vlp"  # vision-language pretrained (BLIP-2, BEIT-3, X-VLM, CLIP, ...)
    FG = "fg"  # fine-grained, trained for the task (SCAN, IMRAM, VSRN, ...)
    CG = "cg"  # coarse-grained cross-modal hashing (ADV, UCCH, DADH, ...)

    def __str__(self) -> str:
        return self.value


class Input:
    """Names of the inputs a model can declare. Plugins may name others; these are built in."""

    PIXELS = "pixels"  # decoded images (PIL), or tensors if the encoder has preprocess_image
    REGIONS = "regions"  # bottom-up-attention region features, (36, 2048) per image
    VGG19_FC7 = "vgg19-fc7"  # 4096-d VGG-19 fc7 image features
    TEXT = "text"  # raw caption strings
    DOC2VEC = "doc2vec"  # 300-d Doc2Vec caption vectors


class QueryTimeAttention(str, Enum):
    """How a SIMILARITY model produces its scores."""

    CROSS_ATTENTION = "cross-attention"  # every (image, text) pair scored by `score` (SCAN, IMRAM)
    FUSION_RERANK = "fusion-rerank"  # first stage by `measure`, top-k re-scored by `score_pairs`

    def __str__(self) -> str:
        return self.value


MEASURES = ("cosine", "inner_product", "euclidean", "hamming", "maxsim")
DTYPES = ("float16", "bfloat16", "float32", "float64", "bit")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class Checkpoint:
    """A known set of weights for a model: where it comes from and how to check it."""

    source: str  # URL, hub id or file name
    format: str  # e.g. "pth", "pth.tar", "t7", "safetensors", "hf", "lavis-pth"
    sha256: str | None = None
    description: str = ""
    size_bytes: int | None = None

    def __post_init__(self) -> None:
        if not self.source or not isinstance(self.source, str):
            raise SpecError("Checkpoint.source must be a non-empty string (URL, hub id or file name)")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise SpecError(f"Checkpoint.sha256 must be 64 lower-case hex digits, got {self.sha256!r}")


def _check_name(value: Any, what: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise SpecError(f"{what} {value!r} must be lower-case letters, digits, '.', '_' or '-'")


def _check_callable_path(value: Any, what: str) -> None:
    """A "module:callable" string, imported only when it is used."""
    if not isinstance(value, str) or not _FACTORY.match(value):
        raise SpecError(f"{what} must be a 'package.module:callable' string, got {value!r}")


def _check_json(value: Any, where: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{where} must be plain JSON data (numbers, strings, lists, dicts): {exc}") from None


@dataclass(frozen=True)
class ModelSpec:
    """A model card: cheap, validated metadata plus a lazy factory.

    `factory` is a "module:callable" string, imported only when the model is loaded. It is
    called as ``factory(spec=..., config=..., checkpoint=..., device=...)`` and returns an
    object following the Encoder (and, for SIMILARITY models, Scorer or Reranker) protocol.
    """

    name: str
    family: Family | str
    output: OutputKind | str
    factory: str
    configs: Mapping[str, Mapping[str, Any]]
    image_input: str = Input.PIXELS
    text_input: str = Input.TEXT
    dim: int | None = None  # embedding width (continuous, first stage of re-rank models)
    bits: int | None = None  # code length (binary)
    dtype: str = "float32"  # of the stored embeddings ("bit" for codes)
    measure: str | None = None  # how embeddings are compared; defaults by output kind
    query_time_attention: QueryTimeAttention | str | None = None  # SIMILARITY models only
    rerank_k: int | None = None  # default top-k of a fusion re-rank
    aliases: tuple[str, ...] = ()
    checkpoints: Mapping[str, Checkpoint] = field(default_factory=dict)
    default_checkpoint: str | None = None
    paper: str = ""
    url: str = ""
    license: str = ""
    description: str = ""
    distribution: str | None = None  # filled in by the registry from the entry point
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once
        _check_name(self.name, "model name")
        self._set_enum("family", Family)
        self._set_enum("output", OutputKind)
        _check_callable_path(self.factory, f"{self.name}: factory")
        self._check_configs()
        for attr in ("image_input", "text_input"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr):
                raise SpecError(f"{self.name}: {attr} must be a non-empty string such as 'pixels' or 'text'")
        set_(self, "aliases", tuple(self.aliases))
        for alias in self.aliases:
            if not isinstance(alias, str) or not _NAME.match(alias):
                raise SpecError(f"{self.name}: alias {alias!r} is not a valid model name")
        if self.dtype not in DTYPES:
            raise SpecError(f"{self.name}: dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        for attr in ("dim", "bits", "rerank_k"):
            value = getattr(self, attr)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise SpecError(f"{self.name}: {attr} must be a positive integer or None, got {value!r}")
        self._check_kind()
        if not isinstance(self.checkpoints, Mapping):
            raise SpecError(f"{self.name}: checkpoints must map a name to a Checkpoint")
        for key, ckpt in self.checkpoints.items():
            if not isinstance(ckpt, Checkpoint):
                raise SpecError(f"{self.name}: checkpoint {key!r} must be a fico_registry.Checkpoint")
        if self.default_checkpoint is not None and self.default_checkpoint not in self.checkpoints:
            raise SpecError(f"{self.name}: default_checkpoint {self.default_checkpoint!r} is not in checkpoints")
        _check_json(dict(self.extra), f"{self.name}: extra")

    def _set_enum(self, attr: str, kind: type[Enum]) -> None:
        """Replace the string `attr` by its `kind` member (frozen: set in place once), or refuse it."""
        value = getattr(self, attr)
        try:
            object.__setattr__(self, attr, kind(value))
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise SpecError(f"{self.name}: {attr} must be one of {allowed}; got {value!r}") from None

    def _check_configs(self) -> None:
        if not isinstance(self.configs, Mapping) or not self.configs:
            raise SpecError(f"{self.name}: configs must be a mapping with at least 'default' and 'tiny'")
        missing = [c for c in ("default", "tiny") if c not in self.configs]
        if missing:
            raise SpecError(
                f"{self.name}: configs lacks {', '.join(missing)} ('default' = the published architecture, "
                "'tiny' = a few-kB version for tests)"
            )
        for key, cfg in self.configs.items():
            if not isinstance(cfg, Mapping):
                raise SpecError(f"{self.name}: config {key!r} must be a mapping")
            _check_json(dict(cfg), f"{self.name}: config {key!r}")

    def _check_kind(self) -> None:
        set_ = object.__setattr__
        if self.output is OutputKind.BINARY:
            if self.bits is None:
                raise SpecError(f"{self.name}: binary models must declare bits (the code length)")
            set_(self, "measure", self.measure or "hamming")
            if self.measure != "hamming":
                raise SpecError(f"{self.name}: binary models are compared by measure='hamming'")
            set_(self, "dtype", "bit")
        elif self.output is OutputKind.CONTINUOUS:
            if self.dim is None:
                raise SpecError(f"{self.name}: continuous models must declare dim (the embedding width)")
            set_(self, "measure", self.measure or "cosine")
        if self.measure is not None and self.measure not in MEASURES:
            raise SpecError(f"{self.name}: measure must be one of {', '.join(MEASURES)}; got {self.measure!r}")
        if self.output is OutputKind.SIMILARITY:
            if self.query_time_attention is None:
                raise SpecError(
                    f"{self.name}: similarity models must set query_time_attention to "
                    "'cross-attention' or 'fusion-rerank'"
                )
            self._set_enum("query_time_attention", QueryTimeAttention)
            if self.query_time_attention is QueryTimeAttention.FUSION_RERANK and self.measure is None:
                raise SpecError(f"{self.name}: a fusion re-rank model must name the measure of its first stage")
        elif self.query_time_attention is not None:
            raise SpecError(f"{self.name}: query_time_attention applies to similarity models only")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def inputs(self) -> tuple[str, str]:
        return (self.image_input, self.text_input)

    @property
    def width(self) -> int | None:
        """Code bits for binary models, embedding width otherwise."""
        return self.bits if self.output is OutputKind.BINARY else self.dim

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["family"] = str(self.family)
        data["output"] = str(self.output)
        data["query_time_attention"] = None if self.query_time_attention is None else str(self.query_time_attention)
        data["aliases"] = list(self.aliases)
        data["configs"] = {k: dict(v) for k, v in self.configs.items()}
        data["extra"] = dict(self.extra)
        return data


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the registry knows how to turn into a Corpus.

    `loader` is a "module:callable" string called as ``loader(root=..., split=..., **options)``
    and returning a fico_registry.data.Corpus. `files` says, per file, what the user must supply.
    """

    name: str
    loader: str
    description: str = ""
    splits: tuple[str, ...] = ("test",)
    default_split: str = "test"
    files: Mapping[str, str] = field(default_factory=dict)
    labels: str = ""  # where category labels come from
    url: str = ""
    license: str = ""
    distribution: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name(self.name, "dataset name")
        _check_callable_path(self.loader, f"{self.name}: loader")
        object.__setattr__(self, "splits", tuple(self.splits))
        if self.default_split not in self.splits:
            raise SpecError(f"{self.name}: default_split {self.default_split!r} is not one of {self.splits}")
        _check_json(dict(self.files), f"{self.name}: files")
        _check_json(dict(self.extra), f"{self.name}: extra")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["splits"] = list(self.splits)
        data["files"] = dict(self.files)
        data["extra"] = dict(self.extra)
        return data


@dataclass(frozen=True)
class FeatureSpec:
    """A feature pipeline that computes a model input (e.g. 'vgg19-fc7') from a corpus.

    `factory` ("module:callable") is called as ``factory(config=..., device=...)`` and returns an
    object with ``compute(items) -> Tensor`` where items are PIL images (modality 'image') or
    caption strings (modality 'text'), plus ``fingerprint() -> str`` identifying its weights.
    """

    name: str
    modality: str  # "image" or "text"
    factory: str
    dim: int
    description: str = ""
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    distribution: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "feature name")
        if self.modality not in ("image", "text"):
            raise SpecError(f"{self.name}: modality must be 'image' or 'text', got {self.modality!r}")
        _check_callable_path(self.factory, f"{self.name}: factory")
        if not isinstance(self.dim, int) or self.dim <= 0:
            raise SpecError(f"{self.name}: dim must be a positive integer")
        if "default" not in self.configs:
            raise SpecError(f"{self.name}: configs must contain 'default'")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["configs"] = {k: dict(v) for k, v in self.configs.items()}
        return data


@dataclass(frozen=True)
class TrainerSpec:
    """A training recipe for a registered model (`fico train MODEL`).

    `factory` ("module:callable") is called as ``factory(model=..., train=Corpus, val=Corpus,
    out=Path, options=dict, device=str, progress=bool)`` and returns a dict run record (with at
    least "checkpoint": path of the checkpoint written in the model's ORIGINAL layout).
    `defaults` are the published hyper-parameters (plain JSON), overridable per run.
    """

    model: str
    factory: str
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper_recipe: str = ""  # where the defaults come from (repo file / paper section)
    distribution: str | None = None

    @property
    def name(self) -> str:
        return self.model

    def __post_init__(self) -> None:
        _check_name(self.model, "trainer model name")
        _check_callable_path(self.factory, f"trainer for {self.model}: factory")
        _check_json(dict(self.defaults), f"trainer for {self.model}: defaults")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["defaults"] = dict(self.defaults)
        return data


@runtime_checkable
class Encoder(Protocol):
    """What every model factory returns (it may also expose `dim` or `bits` for its config).

    A batch is what the spec's input declares: a list of PIL images ('pixels'), a float array
    (n, 36, 2048) ('regions'), (n, 4096) ('vgg19-fc7'), a list of strings ('text'), ...
    Outputs are tensors with one row per item (n, ...), or a dict of such tensors whose
    'embeds' entry is what the spec's measure compares.
    """

    def encode_images(self, batch: Any) -> Any: ...

    def encode_texts(self, batch: Any) -> Any: ...


@runtime_checkable
class Scorer(Encoder, Protocol):
    """Query-time cross-attention: scores every (image, text) pair of two feature blocks."""

    def score(self, images: Any, texts: Any) -> Any:
        """Return a (len(images), len(texts)) tensor of similarities; higher is more similar."""
        ...


@runtime_checkable
class Reranker(Encoder, Protocol):
    """Fusion re-rank: re-scores given (image, text) candidate pairs from a first stage."""

    def score_pairs(self, images: Any, texts: Any) -> Any:
        """Return an (n,) tensor: the score of images[i] with texts[i]."""
        ...


@runtime_checkable
class PreprocessingEncoder(Encoder, Protocol):
    """Optional: an encoder that turns one decoded image into a tensor itself.

    When present, evaluation prepares pixels in worker threads with `preprocess_image` and calls
    `encode_images` with a stacked (n, ...) tensor instead of a list of PIL images, so
    `encode_images` must accept both forms (the conformance kit feeds both).
    """

    def preprocess_image(self, image: Any) -> Any: ...


@runtime_checkable
class PipelineEncoder(Encoder, Protocol):
    """Optional: an encoder that brings its own feature pipelines for some inputs.

    `input_pipelines` maps an input name of the card (e.g. 'vgg19-fc7') to the name of a registered
    feature pipeline that produces it; evaluation runs that pipeline (through the cache) instead of
    the corpus' attached features.
    """

    input_pipelines: Mapping[str, str]


class ModelFactory(Protocol):
    """The callable a card's `factory="module:function"` names; `load_model` calls it like this.

    `config` is the card's chosen configuration merged with user overrides, `checkpoint` a local path
    (or None for random weights: seed them from torch's generator, which `load_model` seeds), and
    `device` a torch device string. It returns an Encoder (or a Scorer / Reranker for query-time models).
    """

    def __call__(
        self, *, spec: ModelSpec, config: Mapping[str, Any], checkpoint: str | None, device: str
    ) -> Encoder: ...
