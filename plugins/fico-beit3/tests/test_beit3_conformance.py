"""The registry's conformance kit, plus inputs, configs and the full-size cards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from beit3_fixtures import tiny_file_config
from fico_beit3.config import Beit3Config
from fico_beit3.image import ImagePreprocessor
from fico_beit3.model import random_model
from fico_beit3.plugin import BASE, LARGE, TINY
from PIL import Image

from fico_registry import get_model_spec, load_model
from fico_registry.errors import ConfigError, DataFormatError
from fico_registry.plugin_api.compat import ensure_torchvision
from fico_registry.plugin_api.testing import check_model, sample_batch


@pytest.mark.parametrize("name", ["beit3", "beit3-large"])
def test_tiny_conforms(name):
    model = check_model(name)
    assert model.encoder.dim == TINY["embed_dim"]


def test_tiny_with_a_sentencepiece_file_conforms(spm_file):
    model = check_model("beit3", config=tiny_file_config(spm_file))
    assert model.encoder.tokenizer.source == str(spm_file)


def test_cards():
    base, large = get_model_spec("beit3"), get_model_spec("beit3-large")
    assert (base.dim, large.dim) == (768, 1024)
    assert base.measure == large.measure == "cosine"
    assert base.configs["default"] == BASE and large.configs["default"] == LARGE
    assert sorted(base.checkpoints) == sorted(large.checkpoints) == ["coco", "f30k"]
    assert base.checkpoints["coco"].source.endswith("/beit3/beit3_base_patch16_384_coco_retrieval.pth")
    assert large.checkpoints["f30k"].source.endswith("/beit3/beit3_large_patch16_384_f30k_retrieval.pth")


@pytest.mark.parametrize(("config", "layers", "width"), [(BASE, 12, 768), (LARGE, 24, 1024)], ids=["base", "large"])
def test_published_shapes_on_meta(config, layers, width):
    """Checked without allocating: the shapes the unilm retrieval checkpoints hold at 384 px."""
    with torch.device("meta"):
        state = random_model(Beit3Config.from_dict(config)).state_dict()
    assert state["beit3.text_embed.weight"].shape == (64010, width)
    assert state["beit3.vision_embed.proj.weight"].shape == (width, 3, 16, 16)
    assert state["beit3.vision_embed.cls_token"].shape == state["beit3.vision_embed.mask_token"].shape == (1, 1, width)
    assert state["beit3.encoder.embed_positions.A.weight"].shape == (577 + 2, width)
    assert state["beit3.encoder.embed_positions.B.weight"].shape == (1024, width)
    assert state[f"beit3.encoder.layers.{layers - 1}.ffn.B.ffn_layernorm.weight"].shape == (4 * width,)
    assert f"beit3.encoder.layers.{layers}.ffn.A.fc1.weight" not in state
    assert state["beit3.encoder.layer_norm.A.weight"].shape == (width,)
    assert state["vision_head.weight"].shape == state["language_head.weight"].shape == (width, width)
    assert "vision_head.bias" not in state and state["logit_scale"].shape == ()


def test_preprocessing_matches_torchvision():
    ensure_torchvision()
    transforms = pytest.importorskip("torchvision.transforms", reason="torchvision is the reference here")

    original = transforms.Compose(
        [
            transforms.Resize((384, 384), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        ]
    )
    ours = ImagePreprocessor(384, BASE["image_mean"], BASE["image_std"])
    rng = np.random.default_rng(0)
    for image in (
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (600, 410), dtype=np.uint8), mode="L"),
    ):
        assert torch.allclose(ours(image), original(image.convert("RGB")), atol=1e-6)


def test_preprocessed_tensors_give_the_same_embeddings():
    model = load_model("beit3", config="tiny", device="cpu")
    images = sample_batch("pixels", 3)
    stacked = torch.stack([model.encoder.preprocess_image(image) for image in images])
    assert torch.equal(model.encode_images(stacked), model.encode_images(images))


def test_bad_pixel_tensor_is_refused():
    model = load_model("beit3", config="tiny", device="cpu")
    with pytest.raises(DataFormatError, match=r"\(B, 3, 32, 32\)"):
        model.encode_images(torch.zeros(2, 3, 16, 16))


def test_empty_batches():
    model = load_model("beit3", config="tiny", device="cpu")
    assert model.encoder.encode_images([]).shape == (0, 32)
    assert model.encoder.encode_texts([]).shape == (0, 32)


def test_padding_does_not_change_a_caption_embedding():
    """CLS never attends to <pad>: a caption's embedding is the same whatever the pad length."""
    short = load_model("beit3", config="tiny", device="cpu")
    long = load_model("beit3", config={**TINY, "max_text_tokens": 48}, device="cpu")
    texts = sample_batch("text", 3)
    assert torch.allclose(short.encode_texts(texts), long.encode_texts(texts), atol=1e-6)


def test_random_init_is_reproducible_from_the_seed():
    texts = sample_batch("text", 2)
    a = load_model("beit3", config="tiny", device="cpu").encode_texts(texts)
    b = load_model("beit3", config="tiny", device="cpu").encode_texts(texts)
    c = load_model("beit3", config={**TINY, "seed": 1}, device="cpu").encode_texts(texts)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, "unknown config keys"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"attention_heads": 5}, "not divisible"),
        ({"image_size": 30}, "not a multiple"),
        ({"max_text_tokens": 80}, "max_source_positions"),
    ],
)
def test_bad_configs(change, message):
    with pytest.raises(ConfigError, match=message):
        load_model("beit3", config={**TINY, **change}, device="cpu")


def test_half_precision_needs_cuda():
    with pytest.raises(ConfigError, match="CUDA"):
        load_model("beit3", config={**TINY, "precision": "fp16"}, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_autocast_on_cuda_is_close_to_fp32(precision):
    images, texts = sample_batch("pixels", 3), sample_batch("text", 3)
    fp32 = load_model("beit3", config="tiny", device="cuda")
    half = load_model("beit3", config={**TINY, "precision": precision}, device="cuda")
    assert half.encode_images(images).dtype == torch.float32
    assert torch.allclose(half.encode_images(images), fp32.encode_images(images), atol=3e-2)
    assert torch.allclose(half.encode_texts(texts), fp32.encode_texts(texts), atol=3e-2)
