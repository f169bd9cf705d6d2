"""scan / scan-ensemble: conformance, original-layout checkpoints, strict loading, end to end."""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from fico_scan.options import SCAN_OPT_DEFAULTS
from scan_originals import SCAN_OPT, SPECIALS, WORDS, regions, scan_shapes, write_scan_checkpoint, write_vocab_json

import fico_registry
from fico_registry import load_model
from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.fixtures import evaluate_on_synthetic
from fico_registry.plugin_api.testing import check_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CAPTIONS = ["a red circle above a small blue square", "two green triangles", "a yellow star next to a zebra", "square"]


def _rewrite(path: Path, change: Any) -> Path:
    ck = torch.load(path, weights_only=False)
    change(ck)
    torch.save(ck, path)
    return path


# -- conformance -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "config"), [("scan", "tiny"), ("scan", "tiny-i2t"), ("scan-ensemble", "tiny")])
def test_tiny_conforms(name: str, config: str) -> None:
    model = check_model(name, config=config, image_batch=regions())
    assert model.encoder.dim == 16
    texts = model.encode_texts(CAPTIONS)
    assert texts[next(k for k in texts if k.endswith("words"))].shape[1] == 48  # padded to max_words


@pytest.mark.parametrize(
    "opt",
    [
        {},
        {"cross_attn": "i2t", "agg_func": "Mean", "lambda_softmax": 4.0, "bi_gru": False},
        {"precomp_enc_type": "weight_norm", "raw_feature_norm": "softmax", "agg_func": "Max", "num_layers": 2},
    ],
)
def test_original_checkpoint_conforms(tmp_path: Path, opt: dict[str, Any]) -> None:
    path = write_scan_checkpoint(tmp_path, **opt)
    model = check_model("scan", checkpoint=path, image_batch=regions())
    scorer = model.encoder.scorer
    assert model.encoder.dim == 8  # from opt.embed_size, not the config's 16
    saved = vars(torch.load(path, weights_only=False)["opt"])
    for key in SCAN_OPT_DEFAULTS:  # every architecture / scoring option is the checkpoint's
        assert scorer.options[key] == saved[key], key
    assert len(scorer.captions.vocab) == len(SPECIALS) + len(WORDS)
    assert scorer.captions.vocab.source.endswith("f30k_precomp_vocab.json")


def test_pytorch_03_weight_norm_scalar_loads(tmp_path: Path) -> None:
    path = write_scan_checkpoint(tmp_path, precomp_enc_type="weight_norm", legacy_weight_g=True)
    model = load_model("scan", config="tiny", checkpoint=path, device="cpu")
    ck = torch.load(path, weights_only=False)
    assert model.encoder.scorer.img_enc.fc.weight_g.item() == pytest.approx(ck["model"][0]["fc.weight_g"].item())


def test_loaded_weights_are_the_checkpoint_s(tmp_path: Path) -> None:
    path = write_scan_checkpoint(tmp_path)
    model = load_model("scan", checkpoint=path, device="cpu")
    ck = torch.load(path, weights_only=False)
    own = [model.encoder.scorer.img_enc.state_dict(), model.encoder.scorer.txt_enc.state_dict()]
    for mine, theirs in zip(own, ck["model"], strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0)


def test_published_architecture_key_names_and_shapes() -> None:
    """The default config on the meta device has exactly the published keys and shapes (no memory used)."""
    from fico_scan.encoders import build_encoders
    from fico_scan.options import SCAN_OPT_DEFAULTS, merge_options

    spec = fico_registry.plugin_api.registry.get_model_spec("scan")
    options = merge_options(spec.configs["default"], None, SCAN_OPT_DEFAULTS, where="test")
    with torch.device("meta"):
        img, txt = build_encoders(options, 8481)
    img_shapes, txt_shapes = scan_shapes({**SCAN_OPT, "embed_size": 1024, "word_dim": 300}, 8481)
    assert {k: tuple(v.shape) for k, v in img.state_dict().items()} == img_shapes
    assert {k: tuple(v.shape) for k, v in txt.state_dict().items()} == txt_shapes
    assert txt_shapes["rnn.weight_ih_l0"] == (3072, 300) and "rnn.weight_hh_l0_reverse" in txt_shapes


# -- strict loading: what each malformed file is told -----------------------------------------------------
def test_missing_key_is_named(tmp_path: Path) -> None:
    path = _rewrite(write_scan_checkpoint(tmp_path), lambda ck: ck["model"][1].pop("rnn.bias_hh_l0_reverse"))
    with pytest.raises(CheckpointError, match=r"model\[1\] \(txt_enc\).*missing keys: rnn\.bias_hh_l0_reverse"):
        load_model("scan", checkpoint=path, device="cpu")


def test_unexpected_key_is_named(tmp_path: Path) -> None:
    path = _rewrite(
        write_scan_checkpoint(tmp_path), lambda ck: ck["model"][0].__setitem__("fc_global.weight", torch.zeros(2))
    )
    with pytest.raises(CheckpointError, match=r"model\[0\] \(img_enc\).*unexpected keys: fc_global\.weight"):
        load_model("scan", checkpoint=path, device="cpu")


def test_architecture_comes_from_opt(tmp_path: Path) -> None:
    # a state dict of a uni-directional GRU under an opt that says bi_gru: the reverse weights are missing
    path = write_scan_checkpoint(tmp_path, bi_gru=False)
    _rewrite(path, lambda ck: setattr(ck["opt"], "bi_gru", True))
    with pytest.raises(CheckpointError, match=r"missing keys: rnn\.weight_ih_l0_reverse"):
        load_model("scan", checkpoint=path, device="cpu")


def test_imram_layout_is_refused(tmp_path: Path) -> None:
    path = _rewrite(
        write_scan_checkpoint(tmp_path),
        lambda ck: ck.__setitem__("model", {"module.img_enc.fc_local.weight": torch.zeros(1)}),
    )
    with pytest.raises(CheckpointError, match="IMRAM-style"):
        load_model("scan", checkpoint=path, device="cpu")


def test_opt_is_required(tmp_path: Path) -> None:
    path = _rewrite(write_scan_checkpoint(tmp_path), lambda ck: ck.pop("opt"))
    with pytest.raises(CheckpointError, match="opt'\\] is NoneType"):
        load_model("scan", checkpoint=path, device="cpu")


def test_vocabulary_must_fit_the_embedding(tmp_path: Path) -> None:
    path = write_scan_checkpoint(tmp_path)
    write_vocab_json(tmp_path / "f30k_precomp_vocab.json", [*WORDS, "extra"])
    with pytest.raises(CheckpointError, match=r"embed\.weight has 18 rows but the vocabulary .* has 19 words"):
        load_model("scan", checkpoint=path, device="cpu")


def test_vocabulary_is_found_or_named(tmp_path: Path) -> None:
    path = write_scan_checkpoint(tmp_path / "run", vocab=False)
    with pytest.raises(CheckpointError, match=r"used f30k_precomp_vocab\.json \(its opt\.vocab_path = '\./vocab/'\)"):
        load_model("scan", checkpoint=path, device="cpu")
    (tmp_path / "run" / "vocab").mkdir()
    write_vocab_json(tmp_path / "run" / "vocab" / "f30k_precomp_vocab.json")
    assert load_model("scan", checkpoint=path, device="cpu").encoder.dim == 8
    elsewhere = write_vocab_json(tmp_path / "mine.json")
    assert load_model("scan", config={"vocab_path": str(elsewhere)}, checkpoint=path, device="cpu").encoder.dim == 8


class Evil:
    def __reduce__(self) -> Any:
        return (os.system, ("echo pwned",))


def test_checkpoints_cannot_run_code(tmp_path: Path) -> None:
    path = write_scan_checkpoint(tmp_path)
    _rewrite(path, lambda ck: ck.__setitem__("extra", Evil()))
    with pytest.raises(CheckpointError, match="system"):  # refused, never run
        load_model("scan", checkpoint=path, device="cpu")


def test_unknown_config_keys_and_bad_values_are_errors() -> None:
    with pytest.raises(ConfigError, match="unknown config keys \\['lamda_lse'\\]"):
        load_model("scan", config={"lamda_lse": 5}, device="cpu")
    with pytest.raises(ConfigError, match="agg_func must be one of"):
        load_model("scan", config={"agg_func": "Median", "vocab_size": 10}, device="cpu")
    with pytest.raises(ConfigError, match="l1norm_d"):
        load_model("scan", config={"raw_feature_norm": "l1norm", "vocab_size": 10}, device="cpu")


def test_too_long_caption_names_the_fix() -> None:
    model = load_model("scan", config="tiny", device="cpu")
    with pytest.raises(ConfigError, match="max_words"):
        model.encode_texts(["a " * 60])


def test_plugin_module_is_light() -> None:
    code = "import sys, fico_scan.plugin; assert 'torch' not in sys.modules, 'plugin.py imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the ensemble --------------------------------------------------------------------------------------------
def test_ensemble_averages_its_two_members(tmp_path: Path) -> None:
    folder = tmp_path / "ensemble"
    write_scan_checkpoint(folder, name="scan_t2i_avg.pth.tar", agg_func="Mean", seed=1)
    write_scan_checkpoint(
        folder, name="scan_i2t_lse.pth.tar", cross_attn="i2t", lambda_lse=5.0, lambda_softmax=4.0, seed=2
    )
    ensemble = check_model("scan-ensemble", checkpoint=folder, image_batch=regions())
    got = ensemble.score(ensemble.encode_images(regions()), ensemble.encode_texts(CAPTIONS))
    parts = []
    for member in ("scan_i2t_lse.pth.tar", "scan_t2i_avg.pth.tar"):
        single = load_model("scan", checkpoint=folder / member, device="cpu")
        parts.append(single.score(single.encode_images(regions()), single.encode_texts(CAPTIONS)))
    torch.testing.assert_close(got, (parts[0] + parts[1]) / 2, rtol=0, atol=1e-6)
    assert [m.options["cross_attn"] for m in ensemble.encoder.members] == ["i2t", "t2i"]
    listed = [str(folder / "scan_i2t_lse.pth.tar"), str(folder / "scan_t2i_avg.pth.tar")]
    again = load_model("scan-ensemble", config={"member_checkpoints": listed}, device="cpu")
    torch.testing.assert_close(
        again.score(again.encode_images(regions()), again.encode_texts(CAPTIONS)), got, rtol=0, atol=0
    )


def test_ensemble_needs_exactly_two_members(tmp_path: Path) -> None:
    write_scan_checkpoint(tmp_path, name="only.pth.tar")
    with pytest.raises(CheckpointError, match="exactly two checkpoint files"):
        load_model("scan-ensemble", checkpoint=tmp_path, device="cpu")


# -- end to end ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["scan", "scan-ensemble"])
def test_evaluates_a_synthetic_corpus(tmp_path: Path, name: str) -> None:
    result = evaluate_on_synthetic(name, tmp_path / "data", device="cpu", cache=False)
    for direction in ("i2t", "t2i"):
        assert 0.0 <= result["instance"][direction]["R@1"] <= 1.0


def test_namespace_is_the_only_allowed_class(tmp_path: Path) -> None:
    """Sanity check of the fixture itself: the opt really is a pickled argparse.Namespace."""
    path = write_scan_checkpoint(tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with torch.serialization.safe_globals([argparse.Namespace]):
        assert isinstance(torch.load(path, weights_only=True)["opt"], argparse.Namespace)
