"""imram: conformance, original-layout checkpoints (DataParallel 'module.' keys), strict loading, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from fico_imram.model import IMRAM_OPT_DEFAULTS
from imram_originals import IMRAM_OPT, SPECIALS, WORDS, imram_shapes, regions, write_imram_checkpoint, write_vocab_json

import fico_registry
from fico_registry import load_model
from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.fixtures import evaluate_on_synthetic
from fico_registry.plugin_api.testing import check_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _rewrite(path: Path, change: Any) -> Path:
    ck = torch.load(path, weights_only=False)
    change(ck)
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("config", ["tiny", "tiny-full"])
def test_tiny_conforms(config: str) -> None:
    model = check_model("imram", config=config, image_batch=regions())
    assert model.encoder.dim == 16


@pytest.mark.parametrize(
    "opt",
    [
        {},
        {"model_mode": "text_IMRAM", "iteration_step": 3, "lambda_softmax": 11.0, "data_name": "coco_precomp"},
        {
            "model_mode": "full_IMRAM",
            "iteration_step": 2,
            "no_IMRAM_norm": False,
            "raw_feature_norm": "softmax",
            "num_layers": 2,
        },
    ],
)
def test_original_checkpoint_conforms(tmp_path: Path, opt: dict[str, Any]) -> None:
    path = write_imram_checkpoint(tmp_path, **opt)
    model = check_model("imram", checkpoint=path, image_batch=regions())
    encoder = model.encoder
    assert encoder.dim == 8
    saved = vars(torch.load(path, weights_only=False)["opt"])
    for key in IMRAM_OPT_DEFAULTS:  # architecture and scoring options are the checkpoint's
        assert encoder.options[key] == saved[key], key
    assert len(encoder.captions.vocab) == len(SPECIALS) + len(WORDS)
    # the weights are the checkpoint's, under the names without 'module.'
    ck = torch.load(path, weights_only=False)["model"]
    own = encoder.net.state_dict()
    assert {f"module.{k}" for k in own} == set(ck)
    for key, value in own.items():
        torch.testing.assert_close(value, ck[f"module.{key}"], rtol=0, atol=0)
    assert encoder.original_state().keys() == ck.keys()


def test_unprefixed_state_dict_loads_too(tmp_path: Path) -> None:
    """A model saved without DataParallel (single GPU) has the same keys without 'module.'."""
    path = write_imram_checkpoint(tmp_path)
    _rewrite(path, lambda ck: ck.__setitem__("model", {k.removeprefix("module."): v for k, v in ck["model"].items()}))
    assert load_model("imram", checkpoint=path, device="cpu").encoder.dim == 8


def test_published_architecture_key_names_and_shapes() -> None:
    from fico_imram.model import IMRAMNet
    from fico_scan.options import merge_options

    spec = fico_registry.plugin_api.registry.get_model_spec("imram")
    options = merge_options(spec.configs["default"], None, IMRAM_OPT_DEFAULTS, where="test")
    with torch.device("meta"):
        net = IMRAMNet(options, 8481)
    want = imram_shapes({**IMRAM_OPT, "embed_size": 1024, "word_dim": 300}, 8481)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == want
    assert want["linear_t2i.weight"] == (1024, 2048) and want["txt_enc.rnn.weight_hh_l0_reverse"] == (3072, 1024)


# -- strict loading -------------------------------------------------------------------------------------------
def test_missing_key_is_named(tmp_path: Path) -> None:
    path = _rewrite(write_imram_checkpoint(tmp_path), lambda ck: ck["model"].pop("module.gate_i2t.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys: gate_i2t\.bias"):
        load_model("imram", checkpoint=path, device="cpu")


def test_unexpected_key_is_named(tmp_path: Path) -> None:
    path = _rewrite(
        write_imram_checkpoint(tmp_path),
        lambda ck: ck["model"].__setitem__("module.img_enc.fc_global.weight", torch.zeros(2)),
    )
    with pytest.raises(CheckpointError, match=r"unexpected keys: img_enc\.fc_global\.weight"):
        load_model("imram", checkpoint=path, device="cpu")


def test_mixed_prefixes_are_an_error(tmp_path: Path) -> None:
    path = _rewrite(
        write_imram_checkpoint(tmp_path),
        lambda ck: ck["model"].__setitem__("gate_i2t.bias", ck["model"].pop("module.gate_i2t.bias")),
    )
    with pytest.raises(CheckpointError, match="some keys have the DataParallel prefix"):
        load_model("imram", checkpoint=path, device="cpu")


def test_scan_layout_is_refused(tmp_path: Path) -> None:
    path = _rewrite(write_imram_checkpoint(tmp_path), lambda ck: ck.__setitem__("model", [{}, {}]))
    with pytest.raises(CheckpointError, match="SCAN / VSRN layout"):
        load_model("imram", checkpoint=path, device="cpu")


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    path = _rewrite(write_imram_checkpoint(tmp_path), lambda ck: setattr(ck["opt"], "embed_size", 16))
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatches: img_enc\.fc_local\.weight: checkpoint \(8, 2048\) vs model \(16, 2048\)",
    ):
        load_model("imram", checkpoint=path, device="cpu")


def test_vocabulary_must_fit_the_embedding(tmp_path: Path) -> None:
    path = write_imram_checkpoint(tmp_path)
    write_vocab_json(tmp_path / "f30k_precomp_vocab.json", WORDS[:-1])
    with pytest.raises(CheckpointError, match=r"embed\.weight has 18 rows but the vocabulary .* has 17 words"):
        load_model("imram", checkpoint=path, device="cpu")


@pytest.mark.parametrize(
    ("opt", "message"),
    [
        ({"model_mode": "vse"}, "model_mode must be one of full_IMRAM, image_IMRAM, text_IMRAM"),
        ({"bi_gru": False}, "needs a bidirectional GRU"),
        ({"iteration_step": 0}, "iteration_step must be a positive integer"),
    ],
)
def test_settings_the_original_cannot_run_are_errors(tmp_path: Path, opt: dict[str, Any], message: str) -> None:
    path = write_imram_checkpoint(tmp_path, **opt)
    with pytest.raises(ConfigError, match=message):
        load_model("imram", checkpoint=path, device="cpu")


def test_plugin_module_is_light() -> None:
    code = "import sys, fico_imram.plugin; assert 'torch' not in sys.modules, 'plugin.py imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("config", ["tiny", "tiny-full"])
def test_evaluates_a_synthetic_corpus(tmp_path: Path, config: str) -> None:
    result = evaluate_on_synthetic("imram", tmp_path / "data", config=config, device="cpu", cache=False)
    for direction in ("i2t", "t2i"):
        assert 0.0 <= result["instance"][direction]["R@1"] <= 1.0
