"""Every card type refuses a bad name and a bad "module:callable" with the same typed message."""

from __future__ import annotations

import pytest

from fico_registry.errors import SpecError
from fico_registry.plugin_api import DatasetSpec, FeatureSpec, ModelSpec, TrainerSpec

CONFIGS = {"default": {}, "tiny": {}}


def _model(**kw):
    return ModelSpec(
        **{"name": "m", "family": "fg", "output": "continuous", "dim": 4, "factory": "a.b:c", "configs": CONFIGS, **kw}
    )


CARDS = {
    "model": (_model, "name", "factory", "model name", "m: factory"),
    "dataset": (
        lambda **kw: DatasetSpec(**{"name": "d", "loader": "a.b:c", **kw}),
        "name",
        "loader",
        "dataset name",
        "d: loader",
    ),
    "feature": (
        lambda **kw: FeatureSpec(**{"name": "f", "modality": "image", "factory": "a.b:c", "dim": 3, **kw}),
        "name",
        "factory",
        "feature name",
        "f: factory",
    ),
    "trainer": (
        lambda **kw: TrainerSpec(**{"model": "t", "factory": "a.b:c", **kw}),
        "model",
        "factory",
        "trainer model name",
        "trainer for t: factory",
    ),
}


@pytest.mark.parametrize("kind", sorted(CARDS))
def test_bad_name_and_bad_callable_path(kind):
    build, name_field, path_field, name_what, path_what = CARDS[kind]
    build()  # the valid card
    with pytest.raises(SpecError, match=f"^{name_what} 'Bad Name' must be lower-case letters"):
        build(**{name_field: "Bad Name"})
    with pytest.raises(SpecError, match=f"^{path_what} must be a 'package.module:callable' string, got 'a.b.c'$"):
        build(**{path_field: "a.b.c"})
