"""Preprocessing as LAVIS: blip_image_eval pixels and blip_caption text."""

import numpy as np
import pytest
import torch
from fico_blip2.image import ImagePreprocessor
from fico_blip2.plugin import DEFAULT
from fico_blip2.text import pre_caption
from PIL import Image

from fico_registry import load_model
from fico_registry.errors import ConfigError, DataFormatError


def test_pixels_equal_torchvision_blip_image_eval():
    from fico_registry.plugin_api.compat import ensure_torchvision

    ensure_torchvision()
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    lavis = transforms.Compose(
        [
            transforms.Resize((364, 364), interpolation=InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(DEFAULT["image_mean"], DEFAULT["image_std"]),
        ]
    )
    rng = np.random.default_rng(0)
    ours = ImagePreprocessor(364, DEFAULT["image_mean"], DEFAULT["image_std"])
    for shape in [(480, 640, 3), (97, 53, 3)]:
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        assert torch.equal(ours(image), lavis(image))
    gray = Image.fromarray(rng.integers(0, 256, (50, 60), dtype=np.uint8))
    assert torch.equal(ours(gray), lavis(gray.convert("RGB")))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("A Man (riding) a horse!", "a man riding a horse"),
        ('  Two dogs: "playing" ; on #grass~ *now*.\n', "two dogs playing on grass now"),
        ("It's a dog, isn't it?", "it's a dog, isn't it?"),  # , ' ? are kept: BERT splits them
        ("one  two\tthree", "one two\tthree"),
    ],
)
def test_pre_caption(raw, clean):
    assert pre_caption(raw) == clean


def test_pre_caption_keeps_fifty_words():
    assert pre_caption(" ".join(f"w{i}" for i in range(80))) == " ".join(f"w{i}" for i in range(50))


def test_text_is_padded_and_truncated_to_35_tokens():
    model = load_model("blip2", config="tiny")
    out = model.encode_texts(["a dog", "x " * 100])
    assert out["input_ids"].shape == (2, 35) and out["attention_mask"].shape == (2, 35)
    assert out["attention_mask"][0].sum() == 1 + 4 + 1  # [CLS] a d ##o ##g [SEP]
    assert out["attention_mask"][1].all() and out["input_ids"][1, -1] == 3  # truncated, ends with [SEP]


def test_stacked_preprocessed_pixels_equal_pil_batch():
    model = load_model("blip2-nf", config="tiny")
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)) for _ in range(3)]
    stacked = torch.stack([model.encoder.preprocess_image(im) for im in images])
    assert torch.equal(model.encode_images(stacked), model.encode_images(images))
    with pytest.raises(DataFormatError, match="pixel tensor"):
        model.encode_images(torch.zeros(2, 3, 31, 31))


def test_unknown_config_key_is_refused():
    with pytest.raises(ConfigError, match="unknown config key"):
        load_model("blip2", config={"imagesize": 224})


def test_bad_precision_is_refused():
    with pytest.raises(ConfigError, match="precision"):
        load_model("blip2", config={**DEFAULT, "precision": "int8"})
