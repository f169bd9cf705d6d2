"""vgg19-fc7: read-out layer, preprocessing, weight files in torchvision's layout, fingerprints."""

from __future__ import annotations

import fractions
import hashlib
import logging

import pytest
import torch
from fico_features.plugin import VGG_CONFIGS
from fico_features.vgg_net import FC7_END, build_vgg19, check_state_dict, fc7
from fico_features.vgg_pipeline import IMAGENET_MEAN, IMAGENET_STD, Vgg19Fc7Pipeline

from fico_registry.errors import CheckpointError

TINY = VGG_CONFIGS["tiny"]


def tiny(**overrides) -> Vgg19Fc7Pipeline:
    return Vgg19Fc7Pipeline({**TINY, **overrides})


def test_registered():
    from fico_registry.plugin_api.registry import list_feature_pipelines

    specs = {s.name: s for s in list_feature_pipelines()}
    assert specs["vgg19-fc7"].dim == 4096 and specs["vgg19-fc7"].modality == "image"
    assert specs["vgg19-fc7"].distribution == "fico-features"
    assert {"default", "tiny", "random"} <= set(specs["vgg19-fc7"].configs)


def test_tiny_shape_determinism_and_batch_invariance(images):
    pipe = tiny()
    out = pipe.compute(images)
    assert out.shape == (len(images), 4096) and out.dtype == torch.float32
    assert (out >= 0).all(), "fc7 is read after its ReLU"
    assert torch.equal(tiny().compute(images), out), "random init is seeded: a rebuild gives the same features"
    one_by_one = torch.cat([pipe.compute(images[i : i + 1]) for i in range(len(images))])
    torch.testing.assert_close(one_by_one, out, atol=1e-5, rtol=1e-4)
    stacked = torch.stack([pipe.preprocess(im) for im in images])
    torch.testing.assert_close(pipe.compute(stacked), out, atol=1e-6, rtol=1e-5)
    assert pipe.compute([]).shape == (0, 4096)


def test_dropout_is_off_and_readout_is_fc7_relu(images):
    pipe = tiny()
    assert not pipe.net.training
    layers = list(pipe.net.classifier[:FC7_END])
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU"]
    assert layers[3].out_features == 4096
    pixels = torch.stack([pipe.preprocess(im) for im in images])
    x = torch.flatten(pipe.net.avgpool(pipe.net.features(pixels)), 1)
    by_hand = torch.relu(layers[3](torch.relu(layers[0](x))))
    torch.testing.assert_close(pipe.compute(pixels), by_hand)


def test_preprocessing_matches_torchvision_eval_transform():
    from PIL import Image

    pipe = Vgg19Fc7Pipeline(
        {**VGG_CONFIGS["random"], "arch": "tiny", **{k: TINY[k] for k in TINY if k.startswith("tiny_")}}
    )
    image = Image.new("RGB", (320, 240), (124, 116, 104))
    pixels = pipe.preprocess(image)
    assert pixels.shape == (3, 224, 224)
    expected = torch.tensor(
        [(v / 255 - m) / s for v, m, s in zip((124, 116, 104), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    )
    torch.testing.assert_close(pixels.mean(dim=(1, 2)), expected, atol=1e-4, rtol=0)
    warp = Vgg19Fc7Pipeline(
        {
            **VGG_CONFIGS["warp224"],
            "weights": None,
            "arch": "tiny",
            **{k: TINY[k] for k in TINY if k.startswith("tiny_")},
        }
    )
    assert warp.preprocess(Image.new("RGB", (500, 100))).shape == (3, 224, 224)
    assert pipe.preprocess(Image.new("L", (300, 300))).shape == (3, 224, 224)  # grey -> RGB


@pytest.mark.parametrize("legacy", [False, True])
def test_weights_file_round_trip(tmp_path, images, legacy):
    """A state dict in torchvision's layout (also the pre-1.6 non-zip format of the 2017 file)."""
    source = tiny(seed=7)
    path = tmp_path / "tiny-vgg.pth"
    torch.save(source.net.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    loaded = tiny(weights=str(path), weights_sha256=None)
    assert torch.equal(loaded.compute(images), source.compute(images))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"sha256:{sha}" in loaded.fingerprint()
    assert loaded.fingerprint() != tiny().fingerprint()
    assert tiny(weights=str(path), weights_sha256=sha[:8]).weights_sha256 == sha  # prefix check passes


def test_weights_found_in_fico_home(tmp_path, monkeypatch, images):
    from fico_registry.plugin_api import fico_home

    folder = fico_home() / "checkpoints"
    folder.mkdir(parents=True)
    source = tiny(seed=3)
    torch.save(source.net.state_dict(), folder / "my-vgg.pth")
    assert torch.equal(tiny(weights="my-vgg.pth").compute(images), source.compute(images))


def test_sha256_mismatch_is_refused(tmp_path):
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(tiny().net.state_dict(), path)
    with pytest.raises(CheckpointError, match="does not start with dcbb9e9d"):
        tiny(weights=str(path), weights_sha256="dcbb9e9d")


def test_wrong_keys_are_named(tmp_path):
    state = tiny().net.state_dict()
    state["classifier.9.weight"] = state.pop("classifier.6.weight")
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys: classifier\.6\.weight.*unexpected keys: classifier\.9"):
        tiny(weights=str(path), weights_sha256=None)


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save(
        {"features.0.weight": torch.zeros(1), "hook": fractions.Fraction(1, 3)}, path
    )  # any class not allow-listed
    with pytest.raises(CheckpointError, match="allow-list"):
        tiny(weights=str(path), weights_sha256=None)


def test_missing_weights_warn_and_fall_back_to_random(caplog):
    with caplog.at_level(logging.WARNING, logger="fico_features.vgg_pipeline"):
        pipe = tiny(weights="vgg19-dcbb9e9d.pth")
    assert "RANDOM weights" in caplog.text
    assert "random-seed0" in pipe.fingerprint()
    with pytest.raises(CheckpointError, match="not found"):
        tiny(weights="vgg19-dcbb9e9d.pth", require_weights=True)


def test_full_vgg19_layout_on_meta():
    """The published network, built without memory: torchvision's key names and shapes, 4096-d fc7."""
    with torch.device("meta"):
        net = build_vgg19()
        out = fc7(net.eval(), torch.empty(2, 3, 224, 224))
    assert out.shape == (2, 4096)
    state = net.state_dict()
    convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    expected = {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    expected |= {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    assert set(state) == expected
    assert state["classifier.0.weight"].shape == (4096, 25088)
    assert state["classifier.3.weight"].shape == (4096, 4096)
    assert state["classifier.6.weight"].shape == (1000, 4096)
    assert sum(t.numel() for t in state.values()) == 143_667_240  # VGG-19's published parameter count

    good = {k: torch.empty(v.shape, device="meta") for k, v in state.items()}
    check_state_dict(net, good, what="meta")
    net.load_state_dict(good, strict=True, assign=True)
    bad = dict(good)
    bad["features.0.weight"] = torch.empty(64, 1, 3, 3, device="meta")
    with pytest.raises(CheckpointError, match=r"features\.0\.weight: file \(64, 1, 3, 3\)"):
        check_state_dict(net, bad, what="meta")
    with pytest.raises(CheckpointError, match=r"missing keys: classifier\.6\.weight"):
        check_state_dict(net, {k: v for k, v in good.items() if not k.startswith("classifier.6")}, what="meta")


def test_through_the_registry_and_the_core_runner(tmp_path, images):
    """fico_registry.models.pipelines runs the pipeline over a corpus's image files."""
    import numpy as np

    from fico_registry import Corpus
    from fico_registry.models.pipelines import build_pipeline, pipeline_features
    from fico_registry.plugin_api.registry import get_registry

    spec = get_registry().feature_pipeline("vgg19-fc7")
    pipe, name = build_pipeline(spec, "tiny")
    assert name == "tiny" and isinstance(pipe, Vgg19Fc7Pipeline)
    paths = []
    for i, image in enumerate(images):
        paths.append(f"img{i}.png")
        image.save(tmp_path / paths[-1])
    corpus = Corpus(
        name="toy",
        split="test",
        image_ids=[str(i) for i in range(5)],
        captions=["x"] * 5,
        caption_to_image=np.arange(5),
        image_paths=paths,
        root=str(tmp_path),
    )
    array, identity = pipeline_features(spec, corpus, "image", config="tiny", batch_size=2)
    assert array.shape == (5, 4096) and identity.startswith("vgg19-fc7:tiny:vgg19-fc7/v1")
    np.testing.assert_allclose(array, pipe.compute([corpus.load_image(i) for i in range(5)]).numpy(), atol=1e-5)
