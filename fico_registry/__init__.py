"""fico-registry: one standard, plugin-based evaluator for image-text retrieval models.

Importing this package is cheap: torch and every model's code load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fico_registry.errors import UnknownDatasetError, UnknownModelError
from fico_registry.plugin_api._lazy import lazy_getattr
from fico_registry.plugin_api.cards import (
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
from fico_registry.plugin_api.hookspecs import hookimpl
from fico_registry.plugin_api.registry import (
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
    "load_model": "fico_registry.models.loading",
    "Model": "fico_registry.models.loading",
    "evaluate_embeddings": "fico_registry.evaluator.evaluate",
    "evaluate_similarity": "fico_registry.evaluator.evaluate",
    "evaluate": "fico_registry.evaluator.evaluate",
    "evaluate_cascade": "fico_registry.studies.cascade",
    "Report": "fico_registry.evaluator.report",
    "load_dataset": "fico_registry.data",
    "Corpus": "fico_registry.data",
    "Judgments": "fico_registry.data",
    "JudgmentSet": "fico_registry.data",
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


# `fico_registry.data.synthetic(...)` without an explicit import; old flat names map to their new homes
_SUBPACKAGES = {
    "data": "fico_registry.data",
    "testing": "fico_registry.testing",
    "plugin_api": "fico_registry.plugin_api",
    "metrics": "fico_registry.evaluator.metrics",
    "training": "fico_registry.training",
    "leaderboard": "fico_registry.leaderboard",
    "results": "fico_registry.results",
    "costs": "fico_registry.studies.costs",
    "distributed": "fico_registry.evaluator.sharded",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY, _SUBPACKAGES)


if TYPE_CHECKING:  # pragma: no cover
    from fico_registry.data import Corpus as Corpus
    from fico_registry.data import load_dataset as load_dataset
    from fico_registry.evaluator.evaluate import evaluate as evaluate
    from fico_registry.evaluator.evaluate import evaluate_embeddings as evaluate_embeddings
    from fico_registry.evaluator.evaluate import evaluate_similarity as evaluate_similarity
    from fico_registry.evaluator.report import Report as Report
    from fico_registry.models.loading import Model as Model
    from fico_registry.models.loading import load_model as load_model
