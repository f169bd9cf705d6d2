"""doc2vec: tokenisation, training, the pickle-free model folder, deterministic inference."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fico_features.doc2vec_pipeline import Doc2VecPipeline
from fico_features.plugin import D2V_CONFIGS
from fico_features.text_tokens import tokenize

from fico_registry.errors import ConfigError, DataFormatError

TINY = D2V_CONFIGS["tiny"]


def trained(captions, **overrides) -> Doc2VecPipeline:
    pipe = Doc2VecPipeline({**TINY, **overrides})
    pipe.train(captions)
    return pipe


def test_registered():
    from fico_registry.plugin_api.registry import list_feature_pipelines

    spec = {s.name: s for s in list_feature_pipelines()}["doc2vec"]
    assert spec.dim == 300 and spec.modality == "text" and spec.distribution == "fico-features"
    for cfg in spec.configs.values():
        assert cfg["vector_size"] == 300 and cfg["dm"] == 0 and cfg["dbow_words"] == 1


def test_tokenize():
    assert tokenize("A man, riding a BIKE.") == ["a", "man", "riding", "a", "bike"]
    assert tokenize("The dog's ball isn’t red!") == ["the", "dog's", "ball", "isn't", "red"]
    assert tokenize("Two 2-year-old kids") == ["two", "2", "year", "old", "kids"]
    assert tokenize("café ﬁne") == ["café", "fine"]  # NFKC folds the ligature
    assert tokenize("  ...  ") == []
    with pytest.raises(TypeError):
        tokenize(None)  # type: ignore[arg-type]


def test_inference_is_deterministic_across_calls_batches_and_orders(captions):
    pipe = trained(captions)
    texts = captions[:8]
    out = pipe.compute(texts)
    assert out.shape == (8, 300) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(pipe.compute(texts), out)
    assert torch.equal(pipe.compute(texts[::-1]).flip(0), out)
    assert torch.equal(torch.cat([pipe.compute([t]) for t in texts]), out)
    assert torch.equal(pipe.compute([texts[3], "unknown words only", texts[3]])[[0, 2]], out[[3, 3]])
    assert not torch.equal(out[0], out[1])
    assert pipe.compute([]).shape == (0, 300)
    empty = pipe.compute(["", ""])
    assert torch.equal(empty[0], empty[1])


def test_trained_vectors_mean_something():
    """Captions sharing words land closer than captions sharing none (a sanity check, not a benchmark)."""
    rng = np.random.default_rng(0)
    animals, things = ["dog", "cat", "horse", "cow"], ["car", "bus", "train", "truck"]
    captions = [f"a {rng.choice(animals)} {rng.choice(['runs', 'sleeps', 'eats'])} on the grass" for _ in range(150)]
    captions += [f"a {rng.choice(things)} {rng.choice(['drives', 'stops', 'parks'])} on the road" for _ in range(150)]
    pipe = trained(captions, epochs=20, infer_epochs=100)
    v = torch.nn.functional.normalize(
        pipe.compute(["a dog eats on the grass", "a cat runs on the grass", "a bus stops on the road"]), dim=1
    )
    assert v[0] @ v[1] > v[0] @ v[2]


def test_model_folder_round_trip_without_pickles(tmp_path, captions):
    folder = tmp_path / "d2v"
    pipe = Doc2VecPipeline(dict(TINY))
    sha = pipe.train(captions, save_to=folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "cum_table.npy",
        "doc2vec.json",
        "sample_int.npy",
        "syn1neg.npy",
        "word_vectors.npy",
    ]
    for npy in folder.glob("*.npy"):
        np.load(npy, allow_pickle=False)
    header = json.loads((folder / "doc2vec.json").read_text())
    assert header["content_sha256"] == sha and header["params"]["vector_size"] == 300
    assert header["provenance"]["n_captions"] == len(captions)

    reloaded = Doc2VecPipeline({**TINY, "model": str(folder)})
    assert torch.equal(reloaded.compute(captions[:6]), pipe.compute(captions[:6]))
    assert reloaded.fingerprint() == pipe.fingerprint()
    assert trained(captions).fingerprint() == pipe.fingerprint(), "training with workers=1 is reproducible"
    assert Doc2VecPipeline({**TINY, "model": str(folder), "infer_epochs": 11}).fingerprint() != pipe.fingerprint()

    again = tmp_path / "again"
    reloaded.save(again)
    assert Doc2VecPipeline({**TINY, "model": str(again)}).fingerprint() == pipe.fingerprint()


def test_same_vectors_in_a_fresh_process_with_another_hash_seed(tmp_path, captions):
    """gensim's own infer_vector seeds from hash(): it differs per process. Ours may not."""
    folder = tmp_path / "d2v"
    pipe = Doc2VecPipeline(dict(TINY))
    pipe.train(captions, save_to=folder)
    here = pipe.compute(captions[:4]).numpy()
    code = (
        "import sys, json, numpy as np; from fico_features.doc2vec_pipeline import Doc2VecPipeline; "
        "from fico_features.plugin import D2V_CONFIGS; "
        f"p = Doc2VecPipeline({{**D2V_CONFIGS['tiny'], 'model': {str(folder)!r}}}); "
        f"np.save(sys.argv[1], p.compute({captions[:4]!r}).numpy())"
    )
    for hash_seed in ("1", "12345"):
        out = tmp_path / f"vec{hash_seed}.npy"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, timeout=120)
        np.testing.assert_array_equal(np.load(out), here)


def test_training_is_reproducible_in_a_fresh_process(tmp_path, captions):
    code = (
        "import sys; from fico_features.doc2vec_pipeline import Doc2VecPipeline; "
        "from fico_features.plugin import D2V_CONFIGS; "
        f"print(Doc2VecPipeline(D2V_CONFIGS['tiny']).train({captions!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "777", "OMP_NUM_THREADS": "1"}
    other = subprocess.run(
        [sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True, timeout=120
    ).stdout.split()[-1]
    assert other == Doc2VecPipeline(dict(TINY)).train(captions)


def test_corrupt_or_foreign_folders_are_refused(tmp_path, captions):
    folder = tmp_path / "d2v"
    Doc2VecPipeline(dict(TINY)).train(captions, save_to=folder)
    vectors = np.load(folder / "word_vectors.npy")
    vectors[0, 0] += 1.0
    np.save(folder / "word_vectors.npy", vectors)
    with pytest.raises(DataFormatError, match="content_sha256"):
        Doc2VecPipeline({**TINY, "model": str(folder)})
    gensim_style = tmp_path / "gensim.model"
    gensim_style.mkdir()
    with pytest.raises(ConfigError, match="not found"):
        Doc2VecPipeline({**TINY, "model": str(gensim_style)})


def test_needs_a_model_before_compute(captions):
    pipe = Doc2VecPipeline(dict(TINY))
    with pytest.raises(ConfigError, match="no model"):
        pipe.compute(captions[:2])
    with pytest.raises(ConfigError, match="fingerprint"):
        pipe.fingerprint()
    with pytest.raises(DataFormatError, match="min_count"):
        Doc2VecPipeline({**TINY, "min_count": 1000}).train(captions)


def test_prepare_trains_once_and_reuses_the_cached_model(captions, caplog):
    corpus = SimpleNamespace(name="toy", split="train", captions=captions, root=None)
    config = {**TINY, "cache_trained": True}
    first = Doc2VecPipeline(config)
    first.prepare(corpus)
    assert first.model_path is not None and first.model_path.parent.name == "doc2vec"
    second = Doc2VecPipeline(config)
    second.prepare(corpus)
    assert second.model_path == first.model_path and second.fingerprint() == first.fingerprint()


def test_prepare_falls_back_to_the_evaluated_captions_loudly(captions, caplog):
    corpus = SimpleNamespace(name="no-such-dataset", split="test", captions=captions, root=None)
    pipe = Doc2VecPipeline({**TINY, "train_split": "train"})
    with caplog.at_level(logging.WARNING, logger="fico_features.doc2vec_pipeline"):
        pipe.prepare(corpus)
    assert "transductive" in caplog.text
    assert pipe.compute(captions[:2]).shape == (2, 300)


def test_through_the_core_runner(captions):
    from fico_registry import Corpus
    from fico_registry.models.pipelines import pipeline_features
    from fico_registry.plugin_api.registry import get_registry

    spec = get_registry().feature_pipeline("doc2vec")
    corpus = Corpus(
        name="toy",
        split="test",
        image_ids=[str(i) for i in range(len(captions))],
        captions=captions,
        caption_to_image=np.arange(len(captions)),
    )
    array, identity = pipeline_features(spec, corpus, "text", config="tiny", batch_size=5)
    assert array.shape == (len(captions), 300) and identity.startswith("doc2vec:tiny:doc2vec/v1")
    again, same = pipeline_features(spec, corpus, "text", config="tiny", batch_size=48)
    np.testing.assert_array_equal(again, array)
    assert same == identity
