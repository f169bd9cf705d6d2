"""Original-layout checkpoints: strict loading and what each malformed file is told."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from vsrn_originals import (
    SPECIALS,
    caption_model_shapes,
    original_opt,
    random_state,
    write_checkpoint,
    write_model_folder,
    write_vocab_pickle,
)

from fico_registry import load_model
from fico_registry.errors import CheckpointError, ConfigError

WORDS = ["a", "red", "circle", "blue", "square"]
N_VOCAB = len(SPECIALS) + len(WORDS)


def _rewrite(path: Path, change: Any) -> Path:
    ck = torch.load(path, weights_only=False)
    change(ck)
    torch.save(ck, path)
    return path


def _load(path: Path, **config: Any) -> Any:
    return load_model("vsrn", config={**config} if config else "tiny", checkpoint=path, device="cpu")


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return write_model_folder(tmp_path, WORDS)


def test_loads_the_zip_format_too(tmp_path: Path) -> None:
    path = write_model_folder(tmp_path, WORDS, legacy_format=False)
    assert _load(path).encoder.dim == 8


def test_missing_key_is_named(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda ck: ck["model"][0].pop("Rs_GCN_3.theta.weight"))
    with pytest.raises(CheckpointError, match=r"model\[0\] \(img_enc\).*missing keys: Rs_GCN_3\.theta\.weight"):
        _load(checkpoint)


def test_unexpected_key_is_named(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda ck: ck["model"][1].__setitem__("rnn.weight_ih_l1", torch.zeros(24, 8)))
    with pytest.raises(CheckpointError, match=r"model\[1\] \(txt_enc\).*unexpected keys: rnn\.weight_ih_l1"):
        _load(checkpoint)


def test_bn_must_match_data_name(checkpoint: Path) -> None:
    # a Flickr30K state dict (with bn) under a COCO opt: the original would have no bn
    _rewrite(checkpoint, lambda ck: setattr(ck["opt"], "data_name", "coco_precomp"))
    (checkpoint.parent / "coco_precomp_vocab.pkl").write_bytes(
        (checkpoint.parent / "f30k_precomp_vocab.pkl").read_bytes()
    )
    with pytest.raises(CheckpointError, match=r"unexpected keys: bn\.weight"):
        _load(checkpoint)


def test_shape_mismatch_is_named(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda ck: setattr(ck["opt"], "embed_size", 16))
    with pytest.raises(
        CheckpointError, match=r"shape mismatches: fc\.weight: checkpoint \(8, 2048\) vs model \(16, 2048\)"
    ):
        _load(checkpoint)


def test_vocabulary_must_fit_the_embedding(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "m.pth.tar", vocab_size=N_VOCAB + 2)
    write_vocab_pickle(tmp_path / "f30k_precomp_vocab.pkl", WORDS)
    with pytest.raises(CheckpointError, match=r"embed\.weight has 11 rows but the vocabulary .* has 9 words"):
        _load(path)


def test_vocabulary_is_required_with_a_checkpoint(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "m.pth.tar", vocab_size=N_VOCAB)
    with pytest.raises(CheckpointError, match=r"used f30k_precomp_vocab\.pkl \(its opt\.vocab_path = '\./vocab/'\)"):
        _load(path)
    write_vocab_pickle(tmp_path / "elsewhere.pkl", WORDS)
    assert _load(path, vocab_path=str(tmp_path / "elsewhere.pkl")).encoder.dim == 8


def test_vocabulary_in_a_vocab_subfolder(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "m.pth.tar", vocab_size=N_VOCAB)
    (tmp_path / "vocab").mkdir()
    write_vocab_pickle(tmp_path / "vocab" / "f30k_precomp_vocab.pkl", WORDS, module="__main__")
    assert _load(path).encoder.dim == 8


def test_caption_branch_entry_is_recognised_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caption = random_state(caption_model_shapes(N_VOCAB), seed=5)
    path = write_model_folder(tmp_path, WORDS, extra_entries=[caption])
    with caplog.at_level(logging.INFO, logger="fico_vsrn"):
        model = _load(path)
    assert model.encoder.dim == 8
    assert "caption-generation model (S2VTAttModel)" in caplog.text


def test_unknown_extra_entry_is_an_error(tmp_path: Path) -> None:
    path = write_model_folder(tmp_path, WORDS, extra_entries=[{"mystery.weight": torch.zeros(2)}])
    with pytest.raises(CheckpointError, match=r"model'\]\[2\] is not a part of VSRN.*mystery\.weight"):
        _load(path)


def test_model_must_be_the_list_of_two_state_dicts(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda ck: ck.__setitem__("model", ck["model"][0]))
    with pytest.raises(CheckpointError, match="single state dict"):
        _load(checkpoint)
    _rewrite(checkpoint, lambda ck: ck.__setitem__("model", [ck["model"]]))
    with pytest.raises(CheckpointError, match=r"must be the list \[img_enc.state_dict\(\), txt_enc.state_dict\(\)\]"):
        _load(checkpoint)


def test_old_batchnorm_state_without_counters_loads(checkpoint: Path) -> None:
    def drop(ck: dict[str, Any]) -> None:
        for key in [k for k in ck["model"][0] if k.endswith("num_batches_tracked")]:
            del ck["model"][0][key]

    _rewrite(checkpoint, drop)
    assert _load(checkpoint).encoder.dim == 8


def test_opt_must_describe_the_architecture(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda ck: delattr(ck["opt"], "word_dim"))
    with pytest.raises(CheckpointError, match="opt lacks word_dim"):
        _load(checkpoint)


def test_opt_must_be_present(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda ck: ck.pop("opt"))
    with pytest.raises(CheckpointError, match="not an original VSRN checkpoint"):
        _load(checkpoint)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"data_name": "f30k"}, "full-image CNN encoder"), ({"measure": "order"}, "measure 'order' is not supported")],
)
def test_unsupported_variants_are_refused(checkpoint: Path, change: dict[str, str], message: str) -> None:
    _rewrite(checkpoint, lambda ck: [setattr(ck["opt"], k, v) for k, v in change.items()])
    with pytest.raises(ConfigError, match=message):
        _load(checkpoint)


def test_code_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth.tar"
    torch.save({"model": [], "opt": original_opt(), "hook": logging.getLogger}, path)
    with pytest.raises(CheckpointError, match="allow-list"):
        _load(path)


def test_code_in_a_vocabulary_is_refused(tmp_path: Path) -> None:
    import pickle

    path = write_checkpoint(tmp_path / "m.pth.tar", vocab_size=N_VOCAB)
    (tmp_path / "f30k_precomp_vocab.pkl").write_bytes(pickle.dumps(logging.getLogger, protocol=2))
    with pytest.raises(CheckpointError, match=r"refusing to load logging\.getLogger"):
        _load(path)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config keys embed_dim"):
        load_model("vsrn", config={"embed_dim": 8}, device="cpu")
    with pytest.raises(ConfigError, match="'fp16' needs a CUDA device"):
        load_model("vsrn", config={"precision": "fp16", "embed_size": 8, "word_dim": 4}, device="cpu")
    with pytest.raises(CheckpointError, match=r"local \.pth\.tar files"):
        load_model("vsrn", config="tiny", checkpoint="someone/vsrn-weights", device="cpu")
