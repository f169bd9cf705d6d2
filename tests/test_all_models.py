"""Every registered model evaluates end to end on a synthetic corpus with its tiny config."""

from __future__ import annotations

import pytest

from fico_registry import evaluate, list_models, load_model

MODELS = [spec.name for spec in list_models()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from fico_registry.data import synthetic

    return synthetic(n_images=12, seed=3, root=tmp_path_factory.mktemp("synthetic"))


@pytest.mark.parametrize("name", MODELS)
def test_tiny_model_evaluates_on_synthetic_corpus(name, corpus):
    model = load_model(name, config="tiny", device="cpu")
    report = evaluate(model, corpus, cache=False, batch_size=8)
    data = report.to_dict()
    assert data["model"]["name"] == name and data["corpus"]["content_hash"] == corpus.content_hash
    for direction in ("i2t", "t2i"):
        assert 0.0 <= data["instance"][direction]["R@1"] <= data["instance"][direction]["R@10"] <= 1.0
        assert data["category"][direction]["mAP@10"] is not None
    encode = data["costs"]["encode"]
    assert encode["images"]["items"] == corpus.n_images and encode["texts"]["items"] == corpus.n_captions
    if model.spec.query_time_attention is not None:
        assert data["costs"]["query_time"]["calls"] > 0
