"""Our Multiway Transformer against the reference: torchscale 0.3.0's BEiT3 (test-only oracle).

torchscale is never imported by the plugin. Install it without its pins (they would
downgrade timm): pip install torchscale==0.3.0 fairscale==0.4.13 --no-deps && pip install einops
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fico_beit3.config import Beit3Config
from fico_beit3.model import random_model
from fico_beit3.plugin import BASE, LARGE, TINY

from fico_registry.plugin_api.compat import ensure_torchvision

ATOL = 1e-5


def _torchscale():
    ensure_torchvision()  # torchscale imports timm, which imports torchvision
    try:
        from torchscale.architecture.config import EncoderConfig
        from torchscale.model.BEiT3 import BEiT3
    except ImportError as exc:
        pytest.skip(
            f"torchscale is not importable ({exc}); install the oracle with "
            "`pip install torchscale==0.3.0 fairscale==0.4.13 --no-deps && pip install einops`"
        )
    return EncoderConfig, BEiT3


def reference_backbone(config: dict):
    """torchscale's BEiT3 exactly as unilm's _get_base_config builds it, at the given sizes."""
    EncoderConfig, BEiT3 = _torchscale()
    args = EncoderConfig(
        img_size=config["image_size"],
        patch_size=config["patch_size"],
        vocab_size=config["vocab_size"],
        multiway=True,
        layernorm_embedding=False,
        normalize_output=True,
        no_output_layer=True,
        drop_path_rate=0,
        encoder_embed_dim=config["embed_dim"],
        encoder_attention_heads=config["attention_heads"],
        encoder_ffn_embed_dim=config["ffn_dim"],
        encoder_layers=config["layers"],
        max_source_positions=config["max_source_positions"],
    )
    return BEiT3(args)


@pytest.fixture(scope="module")
def pair():
    """(torchscale BEiT3, our BEiT3ForRetrieval) holding the same random weights."""
    reference = reference_backbone(TINY).eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in reference.parameters():  # every weight random: LayerNorms, CLS and mask tokens too
            param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    ours = random_model(Beit3Config.from_dict(TINY)).eval()
    copied = {f"beit3.{k}": v for k, v in reference.state_dict().items()}
    own = ours.state_dict()
    heads = {k: own[k] for k in ("vision_head.weight", "language_head.weight", "logit_scale")}
    ours.load_state_dict({**copied, **heads}, strict=True)
    return reference, ours


def _text_batch(vocab: int = 100):
    generator = torch.Generator().manual_seed(5)
    lengths = [3, 9, 16, 12]
    ids = torch.full((len(lengths), 16), 1, dtype=torch.long)
    mask = torch.ones(len(lengths), 16, dtype=torch.bool)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(4, vocab, (n,), generator=generator)
        ids[row, 0], ids[row, n - 1] = 0, 2
        mask[row, :n] = False
    return ids, mask


def _pixels(n: int = 3):
    return torch.randn(n, 3, TINY["image_size"], TINY["image_size"], generator=torch.Generator().manual_seed(7))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_parameter_names_map_one_to_one_under_beit3_prefix():
    reference = reference_backbone(TINY)
    ours = random_model(Beit3Config.from_dict(TINY))
    expected = {f"beit3.{k}": tuple(v.shape) for k, v in reference.state_dict().items()}
    expected.update({"vision_head.weight": (32, 32), "language_head.weight": (32, 32), "logit_scale": ()})
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected


@pytest.mark.parametrize("config", [BASE, LARGE], ids=["base", "large"])
def test_full_size_names_and_shapes_match_torchscale_on_meta(config):
    with torch.device("meta"):
        reference = reference_backbone(config)
        ours = random_model(Beit3Config.from_dict(config))
    expected = {f"beit3.{k}": tuple(v.shape) for k, v in reference.state_dict().items()}
    width = config["embed_dim"]
    expected.update({"vision_head.weight": (width, width), "language_head.weight": (width, width), "logit_scale": ()})
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected


def test_image_only_pass_matches(pair):
    reference, ours = pair
    pixels = _pixels()
    with torch.no_grad():
        want = reference(textual_tokens=None, visual_tokens=pixels)["encoder_out"]
        got = ours.beit3(pixels=pixels)
    assert _max_diff(got, want) < ATOL


def test_text_only_pass_with_padding_matches(pair):
    reference, ours = pair
    ids, mask = _text_batch()
    with torch.no_grad():
        want = reference(textual_tokens=ids, visual_tokens=None, text_padding_position=mask)["encoder_out"]
        got = ours.beit3(text_ids=ids, text_padding_mask=mask)
    assert _max_diff(got, want) < ATOL


def test_image_and_text_pass_matches(pair):
    reference, ours = pair
    ids, mask = _text_batch()
    pixels = _pixels(4)
    with torch.no_grad():
        want = reference(textual_tokens=ids, visual_tokens=pixels, text_padding_position=mask)["encoder_out"]
        got = ours.beit3(text_ids=ids, pixels=pixels, text_padding_mask=mask)
    assert _max_diff(got, want) < ATOL


def test_retrieval_heads_match_unilm_forward(pair):
    """unilm BEiT3ForRetrieval.forward(only_infer=True): normalize(head(encoder_out[:, 0]))."""
    reference, ours = pair
    ids, mask = _text_batch()
    pixels = _pixels()
    with torch.no_grad():
        vision = reference(textual_tokens=None, visual_tokens=pixels)["encoder_out"][:, 0]
        language = reference(textual_tokens=ids, visual_tokens=None, text_padding_position=mask)["encoder_out"][:, 0]
        want_images = F.normalize(vision @ ours.vision_head.weight.T, dim=-1)
        want_texts = F.normalize(language @ ours.language_head.weight.T, dim=-1)
        assert _max_diff(ours.encode_pixels(pixels), want_images) < ATOL
        assert _max_diff(ours.encode_text_ids(ids, mask), want_texts) < ATOL
