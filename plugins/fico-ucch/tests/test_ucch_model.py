"""ucch: the card, the conformance kit, original `.t7` checkpoints, numerics against a per-layer reference."""

from __future__ import annotations

import fractions
import logging
import pickle
import types

import numpy as np
import pytest
import torch
from fico_features.testing import evaluate_hamming_end_to_end

from fico_registry import load_model
from fico_registry.errors import CheckpointError, DTypeError, ShapeError
from fico_registry.plugin_api.testing import check_model


def test_card():
    from fico_registry import get_model_spec

    spec = get_model_spec("ucch")
    assert spec.output == "binary" and spec.bits == 64 and spec.measure == "hamming" and spec.family == "cg"
    assert spec.image_input == "vgg19-fc7" and spec.text_input == "doc2vec"
    assert spec.distribution == "fico-ucch"
    default = spec.configs["default"]
    assert default["image_hidden"] == [8192, 8192] and default["text_hidden"] == [8192]
    assert (default["image_dim"], default["text_dim"]) == (4096, 300)


def test_conformance_tiny(features):
    images, texts = features
    model = check_model("ucch", image_batch=images, text_batch=texts)
    assert model.encoder.bits == 16
    codes = model.encode_images(images)
    assert codes.dtype == torch.int8 and set(codes.unique().tolist()) <= {-1, 1}


def test_conformance_checkpoint(t7, features):
    images, texts = features
    model = check_model("ucch", checkpoint=t7, image_batch=images, text_batch=texts)
    assert model.encoder.bits == 16
    assert model.encoder.checkpoint_info == {"epoch": 7, "Avg": 0.61, "Img2Txt": 0.6, "Txt2Img": 0.62}


def test_full_size_architecture_on_meta():
    """The published widths: the default config builds UCCH.py's feature-mode key names and shapes."""
    from fico_ucch.model import UcchConfig, build_nets
    from fico_ucch.plugin import CONFIGS

    with torch.device("meta"):
        image_net, text_net = build_nets(UcchConfig.from_dict(CONFIGS["default"]).architecture)
    assert {k: tuple(v.shape) for k, v in image_net.state_dict().items()} == {
        "fc.0.weight": (8192, 4096),
        "fc.0.bias": (8192,),
        "fc.2.weight": (8192, 8192),
        "fc.2.bias": (8192,),
        "fc.4.weight": (64, 8192),
        "fc.4.bias": (64,),
    }
    assert {k: tuple(v.shape) for k, v in text_net.state_dict().items()} == {
        "fc.0.weight": (8192, 300),
        "fc.0.bias": (8192,),
        "fc.2.weight": (64, 8192),
        "fc.2.bias": (64,),
    }


def reference_forward(state: dict, x: torch.Tensor) -> torch.Tensor:
    """UCCH's forward written out layer by layer from the state dict: (Linear, ReLU)*, Linear, tanh, / L2 norm."""
    indices = sorted(int(k.split(".")[1]) for k in state if k.endswith(".weight"))
    h = x.double()
    for n, i in enumerate(indices):
        h = h @ state[f"fc.{i}.weight"].double().T + state[f"fc.{i}.bias"].double()
        if n < len(indices) - 1:
            h = torch.clamp(h, min=0)
    h = torch.tanh(h)
    return h / torch.sqrt((h * h).sum(dim=1, keepdim=True))


def test_numerics_match_a_per_layer_reference(t7, features):
    images, texts = features
    state = torch.load(t7, weights_only=False)  # our own fixture: the reference may read it any way
    model = load_model("ucch", config="tiny", checkpoint=t7, device="cpu")
    enc = model.encoder
    for net, key, x in (("image", "image_model_state_dict", images), ("text", "text_model_state_dict", texts)):
        expected = reference_forward(state[key], torch.from_numpy(x))
        got = getattr(enc, f"{net}_activations")(x)
        assert torch.allclose(got.double(), expected, atol=1e-6, rtol=1e-5), (got.double() - expected).abs().max()
        assert torch.allclose(got.norm(dim=1), torch.ones(len(x)), atol=1e-6)
        codes = getattr(model, f"encode_{net}s")(x)
        assert torch.equal(codes, torch.where(expected >= 0, 1, -1).to(torch.int8))


def test_packed_codes_are_numpy_packbits(t7, features):
    images, texts = features
    pm1 = load_model("ucch", config="tiny", checkpoint=t7, device="cpu")
    packed = load_model("ucch", config={**pm1.config, "code_format": "packed"}, checkpoint=t7, device="cpu")
    for batch, side in ((images, "images"), (texts, "texts")):
        signs = getattr(pm1, f"encode_{side}")(batch).numpy()
        bits = getattr(packed, f"encode_{side}")(batch)
        assert bits.dtype == torch.uint8 and bits.shape == (len(batch), 2)
        np.testing.assert_array_equal(bits.numpy(), np.packbits(signs > 0, axis=1))
    check_model("ucch", config="tiny", checkpoint=None, image_batch=images, text_batch=texts)


def test_dims_come_from_the_weights(tmp_path, features, caplog, write_t7):
    path = write_t7(tmp_path, image_hidden=(20,), text_hidden=(7, 9), bits=24)
    images, texts = features
    with caplog.at_level(logging.WARNING, logger="fico_ucch.model"):
        model = load_model("ucch", config="tiny", checkpoint=path, device="cpu")
    assert "differs from the config" in caplog.text
    enc = model.encoder
    assert enc.bits == 24 and enc.image_net.hidden == [20] and enc.text_net.hidden == [7, 9]
    assert model.encode_texts(texts).shape == (6, 24)
    single = write_t7(tmp_path / "single", image_hidden=(), text_hidden=(), bits=8)  # hiden_layer=1: one Linear
    assert load_model("ucch", config="tiny", checkpoint=single).encode_images(images).shape == (6, 8)


def test_legacy_serialisation_and_folders(tmp_path, features, write_t7):
    images, _ = features
    legacy = write_t7(tmp_path / "old", legacy=True)
    new = write_t7(tmp_path / "new")
    a = load_model("ucch", config="tiny", checkpoint=legacy).encode_images(images)
    b = load_model("ucch", config="tiny", checkpoint=new.parent).encode_images(
        images
    )  # folder: its *_best_checkpoint.t7
    assert torch.equal(a, b)
    write_t7(tmp_path / "new", arch="resnet18")
    with pytest.raises(CheckpointError, match="2 files matching"):
        load_model("ucch", config="tiny", checkpoint=new.parent)


def test_numpy1_scalar_names_load(tmp_path, write_t7):
    """Checkpoints written under numpy 1 name numpy.core.multiarray.scalar; numpy 2 calls it numpy._core."""
    from numpy._core import multiarray

    class Numpy1Pickler(pickle._Pickler):
        def save_global(self, obj, name=None):
            if obj is multiarray.scalar:
                self.write(pickle.GLOBAL + b"numpy.core.multiarray\nscalar\n")
                self.memoize(obj)
                return
            super().save_global(obj, name)

    module = types.SimpleNamespace(Pickler=Numpy1Pickler, Unpickler=pickle.Unpickler, __name__="numpy1_pickle")
    path = write_t7(tmp_path, mutate=lambda s: None)
    state = torch.load(path, weights_only=False)
    torch.save(state, path, pickle_module=module)
    assert b"numpy.core.multiarray" in path.read_bytes()
    model = load_model("ucch", config="tiny", checkpoint=path)
    assert model.encoder.checkpoint_info["Avg"] == pytest.approx(0.61)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["image_model_state_dict"].pop("fc.2.bias"), r"fc\.2 has \['weight'\]"),
        (lambda s: s["text_model_state_dict"].__setitem__("fc.2.extra", torch.zeros(1)), "unexpected key 'fc.2.extra'"),
        (lambda s: s.pop("text_model_state_dict"), "not a UCCH checkpoint"),
        (lambda s: s.__setitem__("image_model_state_dict", [1, 2]), "not a UCCH checkpoint"),
        (
            lambda s: s.__setitem__(
                "image_model_state_dict", {f"module.{k}": v for k, v in s["image_model_state_dict"].items()}
            ),
            "nn.DataParallel",
        ),
        (
            lambda s: s.__setitem__(
                "image_model_state_dict",
                {
                    "0.features.0.weight": torch.zeros(2, 3, 3, 3),
                    **{f"1.{k}": v for k, v in s["image_model_state_dict"].items()},
                },
            ),
            "raw-image UCCH model",
        ),
        (
            lambda s: s["text_model_state_dict"].update(
                {"fc.2.weight": torch.zeros(8, 12), "fc.2.bias": torch.zeros(8)}
            ),
            "image codes have 16 bits but text codes 8",
        ),
        (
            lambda s: s["image_model_state_dict"].__setitem__("fc.2.weight", torch.zeros(10, 11)),
            r"fc\.2 takes 11 inputs",
        ),
        (lambda s: s.__setitem__("hook", fractions.Fraction(1, 3)), "allow-list"),
    ],
    ids=["missing", "unexpected", "no-text", "not-a-dict", "dataparallel", "raw-image", "bits", "chain", "unsafe"],
)
def test_bad_checkpoints_are_refused_clearly(tmp_path, mutate, message, write_t7):
    path = write_t7(tmp_path, mutate=mutate)
    with pytest.raises(CheckpointError, match=message):
        load_model("ucch", config="tiny", checkpoint=path)


def test_missing_files_and_hub_ids(tmp_path):
    with pytest.raises(CheckpointError):
        load_model("ucch", config="tiny", checkpoint=str(tmp_path / "nope.t7"))
    from fico_ucch.model import build

    with pytest.raises(CheckpointError, match="no published weights"):
        build(
            config={"image_dim": 4096, "text_dim": 300, "bits": 16, "image_hidden": [8], "text_hidden": [8]},
            checkpoint="penghu-cs/UCCH",
        )


def test_input_checks(features):
    images, texts = features
    model = load_model("ucch", config="tiny")
    with pytest.raises(ShapeError, match=r"\(n, 4096\)"):
        model.encode_images(texts)
    with pytest.raises(DTypeError):
        model.encode_texts(np.zeros((2, 300), dtype=np.int64))
    assert torch.equal(model.encode_images(torch.from_numpy(images)), model.encode_images(images))
    assert torch.equal(load_model("ucch", config="tiny").encode_images(images), model.encode_images(images)), (
        "seeded init"
    )


def test_evaluates_a_synthetic_corpus_end_to_end(tmp_path):
    """Features from the registered pipelines (tiny VGG, tiny Doc2Vec), codes, Hamming, both metric levels."""
    report = evaluate_hamming_end_to_end("ucch", tmp_path, bits=16)
    assert report["costs"]["encode"]["images"]["bytes_per_item"] == 16  # int8 +-1 as returned; 2 bytes packed
