"""Agreement with transformers' own Blip2ForImageTextRetrieval forward (the reference numerics)."""

import pytest
import torch

from fico_registry import load_model
from fico_registry.plugin_api.testing import sample_batch

ATOL = 1e-5


@pytest.fixture(scope="module")
def loaded(hf_folder):
    return load_model("blip2", config="tiny", checkpoint=hf_folder, device="cpu")


@pytest.fixture(scope="module")
def inputs(loaded):
    images = sample_batch("pixels", 4, seed=3)
    captions = ["a red circle above a small blue square", "two dogs", "a cat, a dog and a star", "green"]
    pixels = torch.stack([loaded.encoder.preprocess_image(im) for im in images])
    input_ids, attention_mask = loaded.encoder.captions(captions)
    return images, captions, pixels, input_ids, attention_mask


def test_itc_matches_transformers(loaded, inputs, tiny_model):
    images, captions, pixels, input_ids, attention_mask = inputs
    img, txt = loaded.encode_images(images), loaded.encode_texts(captions)
    with torch.no_grad():
        ref = tiny_model(pixel_values=pixels, input_ids=input_ids, attention_mask=attention_mask)
    torch.testing.assert_close(img["embeds"], ref.image_embeds, atol=ATOL, rtol=0)
    torch.testing.assert_close(txt["embeds"], ref.text_embeds, atol=ATOL, rtol=0)
    maxsim = torch.einsum("iqd,td->itq", img["embeds"], txt["embeds"]).max(dim=-1).values
    torch.testing.assert_close(maxsim, ref.logits_per_image, atol=ATOL, rtol=0)
    assert ref.logits_per_image.std() > 1e-3  # the perturbed model is not degenerate


def test_itm_matches_transformers(loaded, inputs, tiny_model):
    images, captions, pixels, input_ids, attention_mask = inputs
    img, txt = loaded.encode_images(images), loaded.encode_texts(captions)
    with torch.no_grad():
        itm = tiny_model(
            pixel_values=pixels, input_ids=input_ids, attention_mask=attention_mask, use_image_text_matching_head=True
        ).logits_per_image[:, 1]
    ours = loaded.encoder.core.itm_logit(img["vit_tokens"], txt["input_ids"], txt["attention_mask"])
    torch.testing.assert_close(ours, itm, atol=ATOL, rtol=0)
    itc = torch.einsum("nqd,nd->nq", img["embeds"], txt["embeds"]).max(dim=1).values
    torch.testing.assert_close(loaded.score_pairs(img, txt), itm + itc, atol=ATOL, rtol=0)
    assert itm.std() > 1e-3


def test_score_pairs_uses_cached_tokens_and_equals_full_forward(loaded, inputs, tiny_model, monkeypatch):
    images, captions, pixels, input_ids, attention_mask = inputs
    img, txt = loaded.encode_images(images), loaded.encode_texts(captions)
    assert img["vit_tokens"].shape == (4, 226, 32)  # 1 + (30 / 2)^2 tokens of the tiny ViT width
    with torch.no_grad():
        full = tiny_model(
            pixel_values=pixels, input_ids=input_ids, attention_mask=attention_mask, use_image_text_matching_head=True
        ).logits_per_image[:, 1]
        full += tiny_model(
            pixel_values=pixels, input_ids=input_ids, attention_mask=attention_mask
        ).logits_per_image.diag()

    def no_vit(*args, **kwargs):
        raise AssertionError("score_pairs must not run the ViT again")

    monkeypatch.setattr(loaded.encoder.core.model.vision_model, "forward", no_vit)
    torch.testing.assert_close(loaded.score_pairs(img, txt), full, atol=ATOL, rtol=0)


def test_score_pairs_block_invariance(loaded, inputs):
    images, captions, *_ = inputs
    img, txt = loaded.encode_images(images), loaded.encode_texts(captions)
    # the engine pairs arbitrary rows: permuting the pairs permutes the scores
    order = torch.tensor([2, 0, 3, 1])
    picked_img = {k: v[order] for k, v in img.items()}
    picked_txt = {k: v[order] for k, v in txt.items()}
    torch.testing.assert_close(
        loaded.score_pairs(picked_img, picked_txt), loaded.score_pairs(img, txt)[order], atol=ATOL, rtol=0
    )
