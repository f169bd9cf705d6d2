"""Preprocessing as X-VLM's retrieval evaluation: images, caption cleaning, WordPiece ids."""

import numpy as np
import pytest
import torch
from fico_xvlm.image import ImagePreprocessor
from fico_xvlm.plugin import DEFAULT, TINY
from fico_xvlm.text import CaptionTokenizer, make_tokenizer, pre_caption
from PIL import Image
from xvlm_fixtures import VOCAB_TOKENS, write_vocab

from fico_registry import load_model
from fico_registry.errors import ConfigError, DataFormatError
from fico_registry.plugin_api.bert import read_bert_vocab as read_vocab
from fico_registry.plugin_api.compat import ensure_torchvision


def test_image_preprocessing_equals_the_original_torchvision_transform():
    ensure_torchvision()
    from torchvision import transforms

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (75, 113, 3), dtype=np.uint8))
    original = transforms.Compose(
        [
            transforms.Resize((96, 96), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(DEFAULT["image_mean"], DEFAULT["image_std"]),
        ]
    )
    ours = ImagePreprocessor(96, DEFAULT["image_mean"], DEFAULT["image_std"])
    assert torch.equal(ours(image), original(image))


def test_grey_and_rgba_images_become_rgb():
    ours = ImagePreprocessor(16, DEFAULT["image_mean"], DEFAULT["image_std"])
    assert ours(Image.new("L", (20, 30))).shape == (3, 16, 16)
    assert ours(Image.new("RGBA", (20, 30))).shape == (3, 16, 16)


def test_stacked_pixel_tensors_are_accepted_and_checked():
    model = load_model("xvlm-nf", config="tiny", device="cpu")
    images = [Image.new("RGB", (50, 40), c) for c in ("red", "blue")]
    stacked = torch.stack([model.encoder.preprocess_image(i) for i in images])
    assert torch.equal(model.encode_images(stacked), model.encode_images(images))
    with pytest.raises(DataFormatError, match="pixel tensor"):
        model.encode_images(torch.zeros(2, 3, 32, 32))


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("A dog, running: on the grass!", "a dog running on the grass"),
        ('It\'s a "well-known" place (really)', "its a well known place really"),
        ("A man/woman  with   spaces\n", "a man woman with spaces"),
        ("<person> rides a bike.", "person rides a bike"),
        ("Jumps over ~ the #fence; *twice*?", "jumps over the fence twice"),
    ],
)
def test_pre_caption_is_x_vlms(raw, cleaned):
    assert pre_caption(raw) == cleaned


def test_pre_caption_keeps_30_words():
    assert pre_caption(" ".join(f"w{i}" for i in range(40))) == " ".join(f"w{i}" for i in range(30))


def test_empty_caption_is_an_error_as_in_the_original():
    with pytest.raises(DataFormatError, match="empty"):
        pre_caption("?!.")


def test_wordpiece_ids_are_padded_to_max_tokens(tmp_path):
    vocab = read_vocab(write_vocab(tmp_path / "vocab.txt"))
    tokenizer = CaptionTokenizer(make_tokenizer(tmp_path / "vocab.txt", 99), max_tokens=12, max_words=30)
    input_ids, attention_mask = tokenizer(["A red circle, above a DOG.", "cats " * 20])
    words = ["[CLS]", "a", "red", "circle", "above", "a", "dog", "[SEP]"]
    assert input_ids[0].tolist() == [vocab[w] for w in words] + [0] * 4
    assert attention_mask[0].tolist() == [1] * 8 + [0] * 4
    assert input_ids.shape == (2, 12) and input_ids[1, -1].item() == vocab["[SEP]"]  # truncated, [SEP] kept
    assert input_ids[1, 1:3].tolist() == [vocab["cat"], vocab["##s"]]


def test_vocab_must_fit_the_embedding(tmp_path):
    write_vocab(tmp_path / "vocab.txt")
    with pytest.raises(ConfigError, match="embeds only 10 tokens"):
        make_tokenizer(tmp_path / "vocab.txt", 10)
    assert len(VOCAB_TOKENS) < TINY["vocab_size"]


def test_vocab_file_config(tmp_path):
    path = write_vocab(tmp_path / "my-vocab.txt")
    model = load_model("xvlm-nf", config={**TINY, "vocab_file": str(path), "builtin_vocab": None}, device="cpu")
    assert model.encode_texts(["a red circle"]).shape == (1, TINY["embed_dim"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_model("xvlm-nf", config={**TINY, "vocab_file": str(tmp_path / "nope.txt")}, device="cpu")


def test_no_vocab_for_random_full_config_says_what_to_supply():
    with pytest.raises(ConfigError, match=r"bert-base-uncased vocab\.txt"):
        load_model("xvlm", config="default", device="cpu")  # fails before building the 220M-parameter model


def test_bf16_precision_keeps_embeddings_float32():
    model = load_model("xvlm", config={**TINY, "precision": "bf16"}, device="cpu")
    images = model.encode_images([Image.new("RGB", (40, 40), "green")] * 2)
    texts = model.encode_texts(["a green square", "a red dot"])
    assert images["embeds"].dtype == torch.float32 and images["image_states"].dtype == torch.bfloat16
    scores = model.score_pairs(images, texts)
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()
