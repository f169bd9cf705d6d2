"""The square-resize image preprocessing BLIP-2, BEiT-3 and X-VLM share, and empty batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fico_registry.errors import DataFormatError
from fico_registry.plugin_api.image_preprocess import ImagePreprocessor, encode_pixels

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def test_one_image_by_hand():
    """A 2 x 2 image resized to its own size is unchanged: pixels / 255, then (x - 0.5) / 0.5."""
    pixels = np.array([[[0, 255, 51], [102, 0, 0]], [[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    out = ImagePreprocessor(2, MEAN, STD, model="m")(Image.fromarray(pixels))
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255 * 2 - 1
    assert out.dtype == torch.float32 and out.shape == (3, 2, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_empty_list_and_empty_tensor_give_the_same_empty_batch():
    prep = ImagePreprocessor(8, MEAN, STD, model="m")
    assert prep.batch([]).shape == (0, 3, 8, 8) and prep.batch([]).dtype == torch.float32
    assert torch.equal(prep.batch(torch.empty(0, 3, 8, 8)), prep.batch([]))


def test_bad_inputs_name_the_model_and_the_fix():
    prep = ImagePreprocessor(8, MEAN, STD, model="mymodel")
    with pytest.raises(DataFormatError, match="mymodel expects PIL images"):
        prep(np.zeros((8, 8, 3)))
    with pytest.raises(DataFormatError, match=r"mymodel: a pixel tensor must be \(B, 3, 8, 8\)"):
        prep.batch(torch.zeros(2, 3, 4, 4))
    with pytest.raises(DataFormatError, match="must be float"):
        prep.batch(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_encode_pixels_keeps_shapes_for_an_empty_batch():
    calls = []

    def encode(pixels):  # reshapes by the batch size, as a ViT does: fails on 0 rows
        calls.append(pixels.shape[0])
        flat = pixels.reshape(pixels.shape[0], -1, 4)
        return {"tokens": flat, "pooled": flat.mean(1)}

    out = encode_pixels(encode, torch.empty(0, 3, 4, 4))
    assert calls == [1] and out["tokens"].shape == (0, 12, 4) and out["pooled"].shape == (0, 4)
    full = encode_pixels(lambda p: p.sum((1, 2, 3)), torch.ones(2, 3, 4, 4))
    assert full.tolist() == [48.0, 48.0]


@pytest.mark.parametrize("model", ["beit3", "blip2", "blip2-nf", "xvlm", "xvlm-nf"])
def test_every_square_resize_model_encodes_an_empty_batch_to_zero_rows(model):
    from fico_registry import load_model

    encoder = load_model(model, config="tiny", device="cpu").encoder
    one = encoder.encode_images([Image.new("RGB", (20, 30), "red")])
    empty = encoder.encode_images([])
    pairs = [(one[k], empty[k]) for k in one] if isinstance(one, dict) else [(one, empty)]
    for full, none in pairs:
        assert none.shape == (0, *full.shape[1:]) and none.dtype == full.dtype
