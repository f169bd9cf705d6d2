"""dadh: the card, the conformance kit, raw GEN_module.pth checkpoints, numerics against a per-layer reference."""

from __future__ import annotations

import fractions
import logging

import numpy as np
import pytest
import torch
from fico_features.testing import evaluate_hamming_end_to_end

from fico_registry import load_model
from fico_registry.errors import CheckpointError, ConfigError, ShapeError
from fico_registry.plugin_api.testing import check_model


def test_card():
    from fico_registry import get_model_spec

    spec = get_model_spec("dadh")
    assert spec.output == "binary" and spec.bits == 64 and spec.measure == "hamming" and spec.family == "cg"
    assert spec.image_input == "vgg19-fc7" and spec.text_input == "doc2vec" and spec.distribution == "fico-dadh"
    assert spec.configs["default"]["hidden_dim"] == 8192 and spec.configs["default"]["dropout"] is False


def test_conformance_tiny(features):
    images, texts = features
    model = check_model("dadh", image_batch=images, text_batch=texts)
    assert model.encoder.bits == 16 and (model.encoder.image_mean, model.encoder.image_std) == (0.0, 1.0)


@pytest.mark.parametrize("dropout", [False, True])
def test_conformance_checkpoint(tmp_path, features, dropout, write_gen):
    images, texts = features
    path = write_gen(tmp_path / f"mir_16_{dropout}", dropout=dropout)
    model = check_model("dadh", checkpoint=path, image_batch=images, text_batch=texts)
    assert model.encoder.generator.dropout is dropout and model.encoder.bits == 16
    assert (model.encoder.image_mean, model.encoder.image_std) == (0.7, 1.9)


def test_full_size_architecture_on_meta():
    from fico_dadh.model import DadhConfig, build_generator
    from fico_dadh.plugin import CONFIGS

    with torch.device("meta"):
        gen = build_generator(DadhConfig.from_dict(CONFIGS["default"]).architecture)
    shapes = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    assert shapes["image_module.0.weight"] == (8192, 4096) and shapes["image_module.3.weight"] == (4096, 8192)
    assert shapes["image_module.6.weight"] == (2048, 4096) and shapes["image_module.7.running_var"] == (2048,)
    assert shapes["text_module.0.weight"] == (8192, 300) and shapes["hash_module.text.0.weight"] == (64, 2048)
    assert shapes["image_module.1.num_batches_tracked"] == ()
    assert len(shapes) == 2 * (3 * 2 + 3 * 5) + 4


def reference_forward(state: dict, prefix: str, x: torch.Tensor, norm: tuple[float, float] | None) -> torch.Tensor:
    """GEN.generate_*_code written out from the state dict (eval mode): [Linear, BN, ReLU] x 3, Linear, tanh."""
    h = x.double()
    if norm is not None:
        h = (h - norm[0]) / norm[1]
    linear = sorted({int(k.split(".")[1]) for k in state if k.startswith(f"{prefix}_module.") and state[k].ndim == 2})
    for i in linear:
        h = h @ state[f"{prefix}_module.{i}.weight"].double().T + state[f"{prefix}_module.{i}.bias"].double()
        bn = {
            p: state[f"{prefix}_module.{i + 1}.{p}"].double() for p in ("weight", "bias", "running_mean", "running_var")
        }
        h = (h - bn["running_mean"]) / torch.sqrt(bn["running_var"] + 1e-5) * bn["weight"] + bn["bias"]
        h = torch.clamp(h, min=0)
    return torch.tanh(
        h @ state[f"hash_module.{prefix}.0.weight"].double().T + state[f"hash_module.{prefix}.0.bias"].double()
    )


@pytest.mark.parametrize("dropout", [False, True])
def test_numerics_match_a_per_layer_reference(tmp_path, features, dropout, write_gen):
    images, texts = features
    path = write_gen(tmp_path / "ck", dropout=dropout)
    state = torch.load(path, weights_only=True)
    assert float(state["image_module.1.running_var"].mean()) != 1.0  # the fixture's BN statistics are not defaults
    model = load_model("dadh", config="tiny", checkpoint=path)
    for side, x, norm in (("image", images, (0.7, 1.9)), ("text", texts, None)):
        expected = reference_forward(state, side, torch.from_numpy(x), norm)
        got = getattr(model.encoder, f"{side}_activations")(x).double()
        assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5), (got - expected).abs().max()
        codes = getattr(model, f"encode_{side}s")(x)
        assert torch.equal(codes, torch.where(expected >= 0, 1, -1).to(torch.int8))


def test_image_norm_from_config_and_its_absence(tmp_path, features, write_gen):
    images, _ = features
    path = write_gen(tmp_path / "ck", norm=None)
    with pytest.raises(CheckpointError, match=r"image_norm\.json"):
        load_model("dadh", config="tiny", checkpoint=path)
    model = load_model("dadh", config={**_tiny(), "image_mean": 0.7, "image_std": 1.9}, checkpoint=path)
    with_file = write_gen(tmp_path / "ck2", norm=(0.7, 1.9))
    assert torch.equal(
        model.encode_images(images), load_model("dadh", config="tiny", checkpoint=with_file).encode_images(images)
    )
    with pytest.raises(ConfigError, match="both"):
        load_model("dadh", config={**_tiny(), "image_mean": 0.5})
    (tmp_path / "ck2" / "image_norm.json").write_text('{"mean": 1.0, "std": 0}')
    with pytest.raises(CheckpointError, match="std > 0"):
        load_model("dadh", config="tiny", checkpoint=with_file)


def _tiny():
    from fico_dadh.plugin import CONFIGS

    return dict(CONFIGS["tiny"])


def test_dims_come_from_the_weights_and_folders_work(tmp_path, features, caplog, write_gen):
    images, texts = features
    path = write_gen(tmp_path / "nus_32", hidden=40, bits=32, legacy=True)
    with caplog.at_level(logging.WARNING, logger="fico_dadh.model"):
        model = load_model("dadh", config="tiny", checkpoint=path.parent)
    assert "differs from the config" in caplog.text
    assert model.encoder.bits == 32 and model.encoder.generator.image_widths == (40, 20, 10)
    assert model.encode_texts(texts).shape == (6, 32)
    packed = load_model("dadh", config={**_tiny(), "code_format": "packed"}, checkpoint=path)
    np.testing.assert_array_equal(
        packed.encode_images(images).numpy(), np.packbits(model.encode_images(images).numpy() > 0, axis=1)
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("image_module.4.running_mean"), "missing keys: image_module.4.running_mean"),
        (lambda s: s.__setitem__("cnn_f.0.weight", torch.zeros(1)), "CNN-F"),
        (lambda s: s.__setitem__("feature_dis.0.weight", torch.zeros(1)), "discriminator"),
        (lambda s: s.pop("image_module.6.weight"), r"Linear layers at \[0, 3\]"),
        (lambda s: s.pop("hash_module.text.0.weight"), "missing 'hash_module.text.0.weight'"),
        (
            lambda s: s.update(
                {"hash_module.text.0.weight": torch.zeros(8, 6), "hash_module.text.0.bias": torch.zeros(8)}
            ),
            "image codes have 16 bits but text codes 8",
        ),
        (lambda s: s.__setitem__("image_module.3.weight", torch.zeros(12, 23)), r"image_module\.3 takes 23 inputs"),
        (lambda s: s.__setitem__("extra", fractions.Fraction(1, 2)), "allow-list"),
    ],
    ids=["missing-bn", "cnn-f", "dis", "layers", "hash", "bits", "chain", "unsafe"],
)
def test_bad_checkpoints_are_refused_clearly(tmp_path, mutate, message, write_gen):
    path = write_gen(tmp_path / "ck", mutate=mutate)
    with pytest.raises(CheckpointError, match=message):
        load_model("dadh", config="tiny", checkpoint=path)


def test_wrapped_and_missing_checkpoints(tmp_path):
    (tmp_path / "w").mkdir()
    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "w" / "GEN_module.pth")
    with pytest.raises(CheckpointError, match="wrapped"):
        load_model("dadh", config="tiny", checkpoint=tmp_path / "w")
    with pytest.raises(CheckpointError, match=r"without GEN_module\.pth"):
        load_model("dadh", config="tiny", checkpoint=tmp_path)


def test_input_checks(features):
    images, texts = features
    model = load_model("dadh", config="tiny")
    with pytest.raises(ShapeError, match=r"\(n, 300\)"):
        model.encode_texts(images)
    assert torch.equal(load_model("dadh", config="tiny").encode_texts(texts), model.encode_texts(texts)), "seeded init"


def test_evaluates_a_synthetic_corpus_end_to_end(tmp_path):
    evaluate_hamming_end_to_end("dadh", tmp_path, bits=16)
