"""vsrn: conformance, numerics against the original equations, captions, end-to-end evaluation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from vsrn_originals import SPECIALS, write_checkpoint, write_model_folder, write_vocab_pickle

from fico_registry import load_model
from fico_registry.plugin_api.captions import load_vocab
from fico_registry.plugin_api.fixtures import evaluate_on_synthetic
from fico_registry.plugin_api.testing import check_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = ["a", "red", "circle", "above", "small", "blue", "square", "two", "green", "triangles", "next", "to", "."]


def regions(n: int = 4, seed: int = 0) -> np.ndarray:
    """Bottom-up-attention-like features: (n, 36, 2048), non-negative."""
    return np.random.default_rng(seed).gamma(0.5, 1.0, size=(n, 36, 2048)).astype(np.float32)


# -- conformance -------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["tiny", "tiny-coco"])
def test_tiny_conforms(config: str) -> None:
    model = check_model("vsrn", config=config, image_batch=regions())
    assert model.encoder.dim == 8
    assert model.spec.measure == "inner_product" and model.spec.dim == 2048
    img = model.encode_images(regions())
    torch.testing.assert_close(img.norm(dim=1), torch.ones(4))


@pytest.mark.parametrize(("data_name", "num_layers"), [("f30k_precomp", 1), ("coco_precomp", 2)])
def test_original_checkpoint_conforms(tmp_path: Path, data_name: str, num_layers: int) -> None:
    path = write_model_folder(tmp_path, WORDS, data_name=data_name, num_layers=num_layers)
    model = check_model("vsrn", checkpoint=path, image_batch=regions())
    network = model.encoder.network
    assert model.encoder.dim == 8  # from opt.embed_size, not the config
    assert hasattr(network.img_enc, "bn") == (data_name == "f30k_precomp")
    assert network.txt_enc.rnn.num_layers == num_layers
    assert len(network.captions.vocab) == len(SPECIALS) + len(WORDS)


def test_plugin_module_is_light() -> None:
    code = "import sys, fico_vsrn.plugin; assert 'torch' not in sys.modules, 'plugin.py imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- numerics: the original equations, written out independently --------------------------------


def _l2norm_dim1(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x * x).sum(1, keepdim=True))


def _gru_last(
    x: torch.Tensor, s: dict[str, torch.Tensor], prefix: str, layer: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """All outputs and the final state of one GRU layer, from torch's documented gate equations."""
    w_ih, w_hh = s[f"{prefix}weight_ih_l{layer}"], s[f"{prefix}weight_hh_l{layer}"]
    b_ih, b_hh = s[f"{prefix}bias_ih_l{layer}"], s[f"{prefix}bias_hh_l{layer}"]
    h = torch.zeros(x.shape[0], w_hh.shape[1], dtype=x.dtype)
    outputs = []
    for t in range(x.shape[1]):
        gi, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h
        outputs.append(h)
    return torch.stack(outputs, 1), h


def _batchnorm(x: torch.Tensor, s: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = s[prefix + "running_mean"].view(shape), s[prefix + "running_var"].view(shape)
    return (x - mean) / torch.sqrt(var + 1e-5) * s[prefix + "weight"].view(shape) + s[prefix + "bias"].view(shape)


def reference_image(s: dict[str, torch.Tensor], v: torch.Tensor, data_name: str) -> torch.Tensor:
    s = {k: t.double() for k, t in s.items()}
    x = v.double() @ s["fc.weight"].T + s["fc.bias"]  # (B, n, D)
    if data_name != "f30k_precomp":
        x = _l2norm_dim1(x)  # across the regions
    x = x.transpose(1, 2)  # (B, D, n)
    for k in range(1, 5):
        p = f"Rs_GCN_{k}."

        def conv(t: torch.Tensor, name: str, p: str = p) -> torch.Tensor:
            return (
                torch.einsum("oi,bin->bon", s[p + name + ".weight"][:, :, 0], t) + s[p + name + ".bias"][None, :, None]
            )

        g, theta, phi = conv(x, "g"), conv(x, "theta"), conv(x, "phi")
        relation = theta.transpose(1, 2) @ phi / x.shape[2]  # (B, n, n)
        y = (relation @ g.transpose(1, 2)).transpose(1, 2)
        x = _batchnorm(conv(y, "W.0"), s, p + "W.1.") + x
    x = _l2norm_dim1(x.transpose(1, 2))
    _, h = _gru_last(x, s, "img_rnn.")
    if data_name == "f30k_precomp":
        h = _batchnorm(h, s, "bn.")
    return _l2norm_dim1(h)


def reference_text(s: dict[str, torch.Tensor], ids: list[int], num_layers: int) -> torch.Tensor:
    s = {k: t.double() for k, t in s.items()}
    x = s["embed.weight"][torch.tensor(ids)][None]
    for layer in range(num_layers):
        x, _ = _gru_last(x, s, "rnn.", layer)
    return _l2norm_dim1(x[:, -1])


@pytest.mark.parametrize(("data_name", "num_layers"), [("f30k_precomp", 1), ("coco_precomp", 2)])
def test_embeddings_follow_the_original_equations(tmp_path: Path, data_name: str, num_layers: int) -> None:
    path = write_model_folder(tmp_path, WORDS, data_name=data_name, num_layers=num_layers, seed=3)
    ck = torch.load(path, weights_only=False)
    img_state, txt_state = ck["model"]
    model = load_model("vsrn", config="tiny", checkpoint=path, device="cpu")
    v = regions(3, seed=1)
    torch.testing.assert_close(
        model.encode_images(v).double(),
        reference_image(img_state, torch.from_numpy(v), data_name),
        atol=2e-5,
        rtol=1e-4,
    )
    captions = ["A red circle above a small blue square.", "two GREEN triangles next to a zebra"]
    vocab = load_vocab(tmp_path / f"{data_name}_vocab.pkl")
    expected_ids = [
        [1, *(vocab(w) for w in ["a", "red", "circle", "above", "a", "small", "blue", "square", "."]), 2],
        [1, *(vocab(w) for w in ["two", "green", "triangles", "next", "to", "a"]), 3, 2],  # zebra is <unk>
    ]
    ids, lengths = model.encoder.network.captions(captions)
    assert [row[:n].tolist() for row, n in zip(ids, lengths, strict=True)] == expected_ids
    got = model.encode_texts(captions).double()
    for row, seq in enumerate(expected_ids):
        torch.testing.assert_close(got[row : row + 1], reference_text(txt_state, seq, num_layers), atol=2e-5, rtol=1e-4)


def test_region_l2norm_is_over_the_region_axis() -> None:
    from fico_vsrn.modules import vsrn_l2norm

    x = torch.rand(2, 36, 5)
    y = vsrn_l2norm(x)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(2, 5))  # each channel across regions, not each region


def test_text_embedding_is_the_last_valid_step() -> None:
    model = load_model("vsrn", config="tiny", device="cpu")
    short, long = "a red circle", "two small blue squares next to a green triangle above the corner"
    alone = model.encode_texts([short])
    padded = model.encode_texts([long, short])[1:]
    torch.testing.assert_close(padded, alone, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(model.encode_texts([short + " circle"]), alone)


def test_python2_tokenisation_lowercases_ascii_only(tmp_path: Path) -> None:
    model = load_model("vsrn", config="tiny", device="cpu")
    captions = model.encoder.network.captions
    assert captions.tokenizer.lowercase == "ascii" and captions.tokenizer.rules == "treebank"
    ids, _ = captions(["A RED Circle"])
    assert ids[0].tolist() == [1, *(captions.vocab(w) for w in ["a", "red", "circle"]), 2]


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vsrn", "vsrn-ensemble"])
def test_evaluates_a_synthetic_corpus(tmp_path: Path, name: str) -> None:
    result = evaluate_on_synthetic(name, tmp_path / "data", device="cpu", cache=False)
    for direction in ("i2t", "t2i"):
        assert 0.0 <= result["instance"][direction]["R@1"] <= 1.0


def test_vocab_pickles_of_both_module_names(tmp_path: Path) -> None:
    for module in ("vocab", "__main__"):
        vocab = load_vocab(write_vocab_pickle(tmp_path / f"{module}.pkl", WORDS, module=module))
        assert len(vocab) == len(SPECIALS) + len(WORDS) and vocab("red") == 5 and vocab("zebra") == 3


def test_python2_checkpoint_with_latin1_strings(tmp_path: Path) -> None:
    write_vocab_pickle(tmp_path / "f30k_precomp_vocab.pkl", WORDS)
    path = write_checkpoint(
        tmp_path / "model_fliker_1.pth.tar", vocab_size=len(SPECIALS) + len(WORDS), python2_strings=True,
        logger_name="runs/flickr_VSRN_caf\xe9",
    )  # fmt: skip
    model = check_model("vsrn", checkpoint=path, image_batch=regions())
    assert model.encoder.architecture["data_name"] == "f30k_precomp"
