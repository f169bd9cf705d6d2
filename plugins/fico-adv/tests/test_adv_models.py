"""ADV region models: conformance, codes, input checks, published parameter names."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from fico_registry import load_model
from fico_registry.errors import CheckpointError, ConfigError, DTypeError, InputError, ShapeError
from fico_registry.plugin_api.testing import check_model


@pytest.mark.parametrize("name", ["adv-2048", "adv-64"])
def test_conforms(name, regions, captions):
    model = check_model(name, image_batch=regions, text_batch=captions)
    assert model.encoder.bits == model.spec.configs["tiny"]["final_dims"]
    codes = model.encode_images(regions)
    assert codes.dtype == torch.int8 and set(codes.unique().tolist()) == {-1, 1}


@pytest.mark.parametrize("name", ["adv-2048", "adv-64"])
def test_codes_are_balanced(name, regions, captions):
    """Each code is centred on its own (lower) median: exactly bits/2 entries are +1."""
    model = load_model(name, config="tiny", device="cpu")
    bits = model.encoder.bits
    for codes in (model.encode_images(regions), model.encode_texts(captions)):
        assert (codes == 1).sum(dim=1).tolist() == [bits // 2] * len(codes)


def test_cards():
    from fico_registry.plugin_api.registry import get_model_spec

    for bits in (2048, 64):
        spec = get_model_spec(f"adv-{bits}")
        assert spec.bits == bits and spec.measure == "hamming" and str(spec.family) == "cg"
        assert spec.inputs == ("regions", "text")
        assert spec.configs["default"]["final_dims"] == bits


def test_tiny_vocab_matches_tiny_bert():
    from fico_adv.plugin import TINY_BERT
    from fico_adv.wordpiece import tiny_vocab

    assert len(tiny_vocab()) == TINY_BERT["vocab_size"]


def test_listing_imports_nothing_heavy():
    code = (
        "import sys, fico_adv.plugin; "
        "print(sorted(m for m in ('torch', 'numpy', 'fico_adv.model') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_batch_composition_does_not_change_a_caption(captions):
    """Captions are always padded to max_words, so a code never depends on its batch-mates."""
    model = load_model("adv-2048", config="tiny", device="cpu")
    alone = model.encoder.text_activations(captions[:1])
    together = model.encoder.text_activations(captions)[:1]
    torch.testing.assert_close(alone, together, atol=1e-6, rtol=0)


def test_region_input_errors(regions):
    model = load_model("adv-64", config="tiny", device="cpu")
    with pytest.raises(ShapeError, match=r"\(n, regions, 2048\)"):
        model.encode_images(regions[:, :, :100])
    with pytest.raises(ShapeError):
        model.encode_images(regions[0])
    with pytest.raises(DTypeError):
        model.encode_images(regions.astype(np.int32))
    with pytest.raises(InputError):
        model.encode_texts("one caption, not a list")
    # float64 features are read as float32, like the original's torch.tensor(np.load(...)) then .float() model
    codes64 = model.encode_images(regions.astype(np.float64))
    assert torch.equal(codes64, model.encode_images(regions))


def test_config_errors():
    from fico_adv.model import build
    from fico_adv.plugin import _configs

    default = _configs(2048, 16)["default"]
    with pytest.raises(ConfigError, match=r"vocab\.txt"):
        build(config=default, checkpoint=None)  # no vocabulary anywhere
    with pytest.raises(ConfigError, match="unknown ADV config keys"):
        build(config={**default, "finaldims": 3})
    with pytest.raises(ConfigError, match="txt_stru"):
        build(config={**default, "txt_stru": "rnn"})
    with pytest.raises(CheckpointError, match="no hub weights"):
        build(config=default, checkpoint="someone/adv-2048")


def test_vocab_size_must_match_bert(tmp_path, write_vocab, tiny_config):
    vocab = write_vocab(tmp_path / "vocab.txt")  # ~120 entries, tiny BERT has 109 rows
    with pytest.raises(ConfigError, match="rows"):
        load_model("adv-64", config=tiny_config("adv-64", vocab_file=str(vocab)), device="cpu")


# Parameter names and shapes of the published architecture, as the original modules define them
# (image_net.TransformerBinaryMapping with t_cfg.json, text_net.BertBinaryMapping with BERT-base).
def _expected_image_keys(final_dims: int) -> dict[str, tuple[int, ...]]:
    h, ffn = 256, 2048
    keys = {"mapping.weight": (h, 2048), "mapping.bias": (h,)}
    keys.update(_layer_keys("layer", h, ffn))
    keys.update({"mapping2.weight": (final_dims, h), "mapping2.bias": (final_dims,)})
    return keys


def _layer_keys(prefix: str, h: int, ffn: int) -> dict[str, tuple[int, ...]]:
    """One BERT layer: its Linear layers (weight (out, in), bias (out,)) and LayerNorms (gamma, beta (h,))."""
    linears = {
        "attention.self.query": (h, h),
        "attention.self.key": (h, h),
        "attention.self.value": (h, h),
        "attention.output.dense": (h, h),
        "intermediate.dense": (ffn, h),
        "output.dense": (h, ffn),
    }
    keys: dict[str, tuple[int, ...]] = {}
    for name, shape in linears.items():
        keys[f"{prefix}.{name}.weight"], keys[f"{prefix}.{name}.bias"] = shape, shape[:1]
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
        keys[f"{prefix}.{name}.gamma"] = keys[f"{prefix}.{name}.beta"] = (h,)
    return keys


def _expected_text_keys(final_dims: int) -> dict[str, tuple[int, ...]]:
    keys = {
        "bert.embeddings.word_embeddings.weight": (30522, 768),
        "bert.embeddings.position_embeddings.weight": (512, 768),
        "bert.embeddings.token_type_embeddings.weight": (2, 768),
        "bert.embeddings.LayerNorm.gamma": (768,),
        "bert.embeddings.LayerNorm.beta": (768,),
    }
    for i in range(12):
        keys.update(_layer_keys(f"bert.encoder.layer.{i}", 768, 3072))
    keys.update({"bert.pooler.dense.weight": (768, 768), "bert.pooler.dense.bias": (768,)})
    for i, k in enumerate((1, 2, 3)):
        keys[f"convs1.{i}.weight"] = (512, 1, k, 768)
        keys[f"convs1.{i}.bias"] = (512,)
    keys.update({"mapping.weight": (final_dims, 1536), "mapping.bias": (final_dims,)})
    return keys


@pytest.mark.parametrize("bits", [2048, 64])
def test_published_parameter_names(bits):
    from fico_adv.config import AdvConfig
    from fico_adv.image_net import TransformerBinaryMapping
    from fico_adv.plugin import _configs
    from fico_adv.text_net import BertBinaryMapping

    cfg = AdvConfig.from_dict(_configs(bits, 16)["default"])
    with torch.device("meta"):  # full size, no memory
        image = TransformerBinaryMapping(cfg.img_dim, cfg.final_dims, cfg.trans_shape)
        text = BertBinaryMapping(cfg.bert_shape, cfg.final_dims, cfg.cnn_channels)
    assert {k: tuple(v.shape) for k, v in image.state_dict().items()} == _expected_image_keys(bits)
    assert {k: tuple(v.shape) for k, v in text.state_dict().items()} == _expected_text_keys(bits)


def test_hash_head_conventions():
    from fico_adv.hashing import median_centred_tanh, to_codes

    values = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    # torch.median takes the lower middle value (0.2): 0.3 and 0.4 are above it, 0.2 itself lands at -1e-8
    acts = median_centred_tanh(values, 10.0)
    assert to_codes(acts).tolist() == [[-1, 1, -1, 1]]
    assert acts[0, 2].item() < 0
    # exact zeros (as the original's torch.sign would keep) become -1
    assert to_codes(torch.tensor([[0.0, 0.5, -0.5]])).tolist() == [[-1, 1, -1]]
    # ties at the median (e.g. a softmax that underflowed to exact zeros) all go to -1, as in the original
    saturated = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    assert to_codes(median_centred_tanh(saturated, 100.0)).tolist() == [[-1, -1, -1, -1, -1, 1]]


def test_median_offset_lost_to_rounding():
    """For |median| >= 0.25 float32 rounds median + 1e-8 back to the median (screen image branch).

    The original's torch.sign then keeps a 0 in the code; here that bit is -1.
    """
    from fico_adv.hashing import median_centred_tanh, to_codes

    values = torch.tensor([[0.5, 2.0, -1.0, 3.0]])  # lower median 0.5
    acts = median_centred_tanh(values, 10.0)
    assert acts[0, 0].item() == 0.0
    assert to_codes(acts).tolist() == [[-1, 1, -1, 1]]
