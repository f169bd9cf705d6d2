"""End to end on the synthetic corpus, and the core's re-rank against Retrieval.evaluation's loop."""

import numpy as np
import pytest
import torch

import fico_registry
from fico_registry import evaluate, evaluate_similarity, load_model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return fico_registry.data.synthetic(n_images=12, seed=3, root=tmp_path_factory.mktemp("synthetic"))


@pytest.mark.parametrize("name", ["xvlm", "xvlm-nf"])
def test_tiny_model_evaluates_on_synthetic_corpus(name, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("FICO_HOME", str(tmp_path))  # the embedding cache goes there
    report = fico_registry.evaluate(load_model(name, config="tiny"), corpus)
    data = report.to_dict()
    assert data["model"]["name"] == name
    for direction in ("i2t", "t2i"):
        assert 0.0 <= data["instance"][direction]["R@1"] <= data["instance"][direction]["R@10"] <= 1.0
        assert data["category"][direction]["mAP@10"] is not None
    if name == "xvlm":
        assert data["costs"]["query_time"]["calls"] > 0
        assert data["settings"]["rerank_k"] == 16  # the tiny config's


def _retrieval_evaluation(model, corpus, k):
    """X-VLM's Retrieval.evaluation, step by step: ITC top-k per query, ITM logit, -100 elsewhere."""
    images = model.encode_images([corpus.load_image(i) for i in range(corpus.n_images)])
    texts = model.encode_texts(list(corpus.captions))
    sims = images["embeds"] @ texts["embeds"].T
    i2t = torch.full(sims.shape, -100.0)
    for i in range(sims.shape[0]):
        top = sims[i].topk(k).indices
        pairs_img = {key: v[[i] * k] for key, v in images.items()}
        pairs_txt = {key: v[top] for key, v in texts.items()}
        i2t[i, top] = model.score_pairs(pairs_img, pairs_txt)
    t2i = torch.full(sims.T.shape, -100.0)
    for t in range(sims.shape[1]):
        top = sims[:, t].topk(k).indices
        pairs_img = {key: v[top] for key, v in images.items()}
        pairs_txt = {key: v[[t] * k] for key, v in texts.items()}
        t2i[t, top] = model.score_pairs(pairs_img, pairs_txt)
    return i2t.numpy(), t2i.numpy()


def test_core_rerank_equals_the_original_evaluation_loop(corpus, retrieval_pth):
    model = load_model("xvlm", config="tiny", checkpoint=retrieval_pth, device="cpu")
    k = 8
    i2t, t2i = _retrieval_evaluation(model, corpus, k)
    assert len(np.unique(i2t)) > k  # the fused scores are not degenerate
    expected = evaluate_similarity(i2t, corpus.caption_to_image, t2i=t2i, device="cpu").to_dict()["instance"]
    got = evaluate(model, corpus, cache=False, batch_size=5, rerank_k=k, outside_topk="exclude", device="cpu")
    got = got.to_dict()["instance"]
    for direction in ("i2t", "t2i"):
        for metric in ("R@1", "R@5", "R@10"):
            assert got[direction][metric] == pytest.approx(expected[direction][metric]), (direction, metric)
