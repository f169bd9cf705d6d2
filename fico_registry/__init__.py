"""fico-registry: one standard, plugin-based evaluator for image-text retrieval models.

Importing this package is cheap: torch and every model's code load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import UnknownDatasetError, UnknownModelError
from .hookspecs import hookimpl
from .protocol import (
    Checkpoint,
    DatasetSpec,
    Encoder,
    Family,
    FeatureSpec,
    Input,
    ModelSpec,
    OutputKind,
    QueryTimeAttention,
    Reranker,
    Scorer,
    TrainerSpec,
)
from .registry import (
    get_dataset_spec,
    get_model_spec,
    get_trainer_spec,
    list_datasets,
    list_feature_pipelines,
    list_models,
    list_trainers,
    plugins,
)

__version__ = "0.1.0"

# name -> module that defines it; imported on first attribute access (PEP 562)
_LAZY = {
    "load_model": "loading",
    "Model": "loading",
    "evaluate_embeddings": "evaluation",
    "evaluate_similarity": "evaluation",
    "evaluate": "evaluation",
    "Report": "report",
    "load_dataset": "data",
    "Corpus": "data",
}

__all__ = [
    "Checkpoint",
    "DatasetSpec",
    "Encoder",
    "Family",
    "FeatureSpec",
    "Input",
    "ModelSpec",
    "OutputKind",
    "QueryTimeAttention",
    "Reranker",
    "Scorer",
    "TrainerSpec",
    "UnknownDatasetError",
    "UnknownModelError",
    "get_dataset_spec",
    "get_model_spec",
    "get_trainer_spec",
    "hookimpl",
    "list_datasets",
    "list_feature_pipelines",
    "list_models",
    "list_trainers",
    "plugins",
    *_LAZY,
]


_SUBPACKAGES = ("data", "testing", "metrics", "training", "leaderboard", "costs", "distributed")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBPACKAGES:  # `fico_registry.data.synthetic(...)` without an explicit import
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fico_registry' has no attribute {name!r}")

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from .data import Corpus as Corpus
    from .data import load_dataset as load_dataset
    from .evaluation import evaluate as evaluate
    from .evaluation import evaluate_embeddings as evaluate_embeddings
    from .evaluation import evaluate_similarity as evaluate_similarity
    from .loading import Model as Model
    from .loading import load_model as load_model
    from .report import Report as Report
