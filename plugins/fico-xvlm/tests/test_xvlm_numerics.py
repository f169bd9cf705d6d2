"""Our BERT text / fusion layers against transformers' BERT (the reference installable here)."""

import pytest
import torch
from fico_xvlm.bert import BertLayer, XBertModel, extended_mask
from fico_xvlm.plugin import TINY

from fico_registry.plugin_api.compat import ensure_torchvision

HIDDEN, HEADS, IMAGE_WIDTH = 24, 4, 40


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Non-default values everywhere (LayerNorm gains too), so every parameter matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=generator))


def _transformers_bert(**overrides):
    ensure_torchvision()
    from transformers import BertConfig
    from transformers.models.bert import modeling_bert

    config = BertConfig(
        vocab_size=99,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=48,
        hidden_act="gelu",
        max_position_embeddings=64,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **overrides,
    )
    config._attn_implementation = "eager"  # scores + additive mask, softmax: the original's computation
    return config, modeling_bert


def _padding_mask(lengths, length):
    return (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()


def test_fusion_layer_matches_transformers_bert_layer_with_cross_attention():
    config, modeling_bert = _transformers_bert(is_decoder=True, add_cross_attention=True)
    reference = modeling_bert.BertLayer(config).eval()
    # X-VLM's cross-attention reads 1024-d image tokens into a 768-d BERT: give the reference the
    # same key / value widths (its forward only applies these Linears to encoder_hidden_states).
    reference.crossattention.self.key = torch.nn.Linear(IMAGE_WIDTH, HIDDEN)
    reference.crossattention.self.value = torch.nn.Linear(IMAGE_WIDTH, HIDDEN)
    ours_config = {
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "intermediate_size": 48,
        "layer_norm_eps": 1e-12,
    }
    ours = BertLayer(ours_config, cross_attention_width=IMAGE_WIDTH).eval()
    _perturb(ours, seed=3)
    reference.load_state_dict(ours.state_dict(), strict=True)  # same parameter names, same shapes

    generator = torch.Generator().manual_seed(4)
    text = torch.randn(5, 11, HIDDEN, generator=generator)
    image = torch.randn(5, 17, IMAGE_WIDTH, generator=generator)
    mask = extended_mask(_padding_mask([11, 7, 3, 1, 9], 11), torch.float32)
    with torch.no_grad():
        expected = reference(text, attention_mask=mask, encoder_hidden_states=image, encoder_attention_mask=None)
        got = ours(text, mask, image)
    expected = expected[0] if isinstance(expected, tuple) else expected
    assert (got - expected).abs().max().item() < 1e-5


def test_text_layers_match_transformers_bert_model():
    """mode='text': embeddings + layers [0, fusion_layer) equal transformers' BertModel of that depth."""
    config, modeling_bert = _transformers_bert(num_hidden_layers=3)
    reference = modeling_bert.BertModel(config, add_pooling_layer=False).eval()
    ours_config = {
        **TINY,
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "intermediate_size": 48,
        "num_hidden_layers": 5,
        "fusion_layer": 3,
    }
    ours = XBertModel(ours_config, image_width=IMAGE_WIDTH).eval()
    _perturb(ours, seed=5)
    text_part = {k: v for k, v in ours.state_dict().items() if not k.startswith(("encoder.layer.3", "encoder.layer.4"))}
    missing, unexpected = reference.load_state_dict(text_part, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing)

    input_ids = torch.randint(5, 99, (4, 13), generator=torch.Generator().manual_seed(6))
    attention_mask = _padding_mask([13, 8, 2, 5], 13)
    input_ids[attention_mask == 0] = 0
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        got = ours.encode_text(input_ids, attention_mask)
    assert (got - expected).abs().max().item() < 1e-5


def test_fusion_uses_only_the_fusion_layers():
    ours = XBertModel({**TINY, "num_hidden_layers": 4, "fusion_layer": 2}, image_width=16).eval()
    states, image = torch.randn(2, 6, TINY["hidden_size"]), torch.randn(2, 5, 16)
    mask = torch.ones(2, 6, dtype=torch.long)
    with torch.no_grad():
        before = ours.fuse(states, mask, image)
        ours.encoder.layer[0].output.dense.weight.add_(1.0)  # a text-only layer
        assert torch.equal(ours.fuse(states, mask, image), before)
        ours.encoder.layer[3].output.dense.weight.add_(1.0)
        assert not torch.equal(ours.fuse(states, mask, image), before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_padding_mask_is_the_originals(dtype):
    mask = extended_mask(torch.tensor([[1, 1, 0]]), dtype)
    assert mask.dtype == dtype and mask.shape == (1, 1, 1, 3)
    assert mask.flatten().tolist() == [0.0, 0.0, -10000.0]
