"""RunInputs: pipelines fitted for a training run, cached, saved beside a checkpoint, reloaded identically."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fico_features.run_inputs import CaptionSampler, RunInputs, pipeline_overrides

from fico_registry.errors import ConfigError, DataFormatError


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    from fico_registry import load_dataset

    root = tmp_path_factory.mktemp("synthetic")
    return {
        split: load_dataset("synthetic", split=split, root=root / split, n_images=6, seed=0, regions=False)
        for split in ("train", "test")
    }


def tiny(tmp_path) -> RunInputs:
    return RunInputs(image_config="tiny", text_config="tiny", cache=tmp_path / "cache")


def test_fit_save_load_attach(corpora, tmp_path):
    inputs = tiny(tmp_path)
    with pytest.raises(ConfigError, match="not fitted"):
        inputs.features(corpora["train"], "text")
    inputs.fit(corpora["train"])
    images, texts = inputs.features(corpora["test"], "image"), inputs.features(corpora["test"], "text")
    assert images.shape == (6, 4096) and texts.shape == (30, 300) and images.flags.writeable
    run = tmp_path / "run"
    inputs.save(run)
    info = json.loads((run / "inputs.json").read_text())
    assert info["image"] == {
        "pipeline": "vgg19-fc7",
        "config": "tiny",
        "fingerprint": inputs.fingerprint("image"),
        "attached": False,
    }
    assert info["text"]["model_folder"] == "doc2vec" and (run / "doc2vec" / "doc2vec.json").is_file()

    again = RunInputs.load(run, cache=tmp_path / "other-cache")
    np.testing.assert_array_equal(again.features(corpora["test"], "text"), texts)
    np.testing.assert_array_equal(again.features(corpora["test"], "image"), images)
    attached = again.attach(corpora["test"], tmp_path / "features")
    assert set(attached.features) == {"vgg19-fc7", "doc2vec"}
    np.testing.assert_array_equal(attached.features["doc2vec"].rows(np.arange(30)), texts)
    overrides = pipeline_overrides(run)
    assert (
        overrides["doc2vec"]["model"] == str((run / "doc2vec").resolve()) and overrides["vgg19-fc7"]["arch"] == "tiny"
    )


def test_a_changed_pipeline_is_refused(corpora, tmp_path):
    inputs = tiny(tmp_path)
    inputs.fit(corpora["train"])
    run = tmp_path / "run"
    inputs.save(run)
    info = json.loads((run / "inputs.json").read_text())
    info["image"]["fingerprint"] = "vgg19-fc7/v1:vgg19:sha256:other-weights"
    (run / "inputs.json").write_text(json.dumps(info))
    with pytest.raises(DataFormatError, match="differs from the one the model was trained with"):
        RunInputs.load(run)
    (run / "inputs.json").write_text("{}")
    with pytest.raises(DataFormatError, match="not a fico-run-inputs/1 file"):
        RunInputs.load(run)


def test_attached_features_win_and_are_then_required(corpora, tmp_path):
    own = np.arange(6 * 4096, dtype=np.float32).reshape(6, 4096)
    np.save(tmp_path / "own.npy", own)
    train = corpora["train"].with_features("vgg19-fc7", tmp_path / "own.npy", modality="image")
    inputs = tiny(tmp_path)
    inputs.fit(train)
    np.testing.assert_array_equal(inputs.features(train, "image"), own)
    inputs.save(tmp_path / "run")
    loaded = RunInputs.load(tmp_path / "run")
    with pytest.raises(DataFormatError, match="precomputed vgg19-fc7 features"):
        loaded.attach(corpora["test"], tmp_path / "features")
    test = corpora["test"].with_features("vgg19-fc7", tmp_path / "own.npy", modality="image")
    assert set(loaded.attach(test, tmp_path / "features").features) == {"vgg19-fc7", "doc2vec"}
    assert set(pipeline_overrides(tmp_path / "run")) == {"doc2vec"}


def test_caption_sampler():
    c2i = np.array([1, 0, 1, 2, 0, 1])
    features = np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    sampler = CaptionSampler(c2i, 3, features, "random")
    picks = sampler.epoch(0, 0)[:, 0].astype(int)
    assert [c2i[p] for p in picks] == [0, 1, 2]  # each image gets one of its own captions
    np.testing.assert_array_equal(sampler.epoch(0, 0), sampler.epoch(0, 0))
    seen = {tuple(sampler.epoch(0, e)[:, 0]) for e in range(20)}
    assert len(seen) > 1
    mean = CaptionSampler(c2i, 3, features, "mean").epoch(0, 5)
    np.testing.assert_allclose(mean[:, 0], [2.5, 7 / 3, 3.0], rtol=1e-6)
    with pytest.raises(ConfigError, match="no caption"):
        CaptionSampler(c2i, 4, features)
    with pytest.raises(ConfigError, match="text_sample"):
        CaptionSampler(c2i, 3, features, "first")
