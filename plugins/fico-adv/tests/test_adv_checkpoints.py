"""ADV checkpoints in the original layout: {'epoch','model':[img,txt(,concept)],'best_rsum','opt','Eiters'}."""

from __future__ import annotations

import pytest
import torch

from fico_registry import load_model
from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.testing import check_model


def _source(name: str, tiny_config):
    """A tiny random model whose weights the fixture checkpoint will hold (vocab written next to it)."""
    model = load_model(name, config=tiny_config(name), device="cpu")
    torch.manual_seed(1)
    with torch.no_grad():  # move off the default init so a silent failure to load would show
        for net in (model.encoder.image_net, model.encoder.text_net):
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
@pytest.mark.parametrize("name", ["adv-2048", "adv-64"])
def test_round_trip(name, legacy, tmp_path, regions, captions, tiny_config, original_checkpoint):
    source = _source(name, tiny_config)
    path = original_checkpoint(source.encoder, tmp_path / "model_best.pth.tar", legacy=legacy)
    # the user supplies BERT's vocab.txt next to the checkpoint (here: the same tiny vocabulary)
    from fico_adv.wordpiece import tiny_vocab

    (tmp_path / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    config = tiny_config(name, vocab_file=None)
    loaded = check_model(name, config=config, checkpoint=path, image_batch=regions, text_batch=captions)
    torch.testing.assert_close(
        loaded.encoder.image_activations(regions), source.encoder.image_activations(regions), atol=0, rtol=0
    )
    torch.testing.assert_close(
        loaded.encoder.text_activations(captions), source.encoder.text_activations(captions), atol=0, rtol=0
    )
    # a folder holding model_best.pth.tar works too
    again = load_model(name, config=config, checkpoint=tmp_path, device="cpu")
    assert torch.equal(again.encode_texts(captions), loaded.encode_texts(captions))


def test_two_entry_model_list(tmp_path, regions, tiny_config, original_checkpoint):
    source = _source("adv-64", tiny_config)
    path = original_checkpoint(source.encoder, tmp_path / "checkpoint_7.pth.tar", concept=False)
    loaded = load_model("adv-64", config=tiny_config("adv-64"), checkpoint=path, device="cpu")
    assert torch.equal(loaded.encode_images(regions), source.encode_images(regions))


def _save(state, path):
    torch.save(state, path)
    return path


def test_strict_load_names_the_key(tmp_path, tiny_config, original_checkpoint):
    source = _source("adv-2048", tiny_config)
    path = original_checkpoint(source.encoder, tmp_path / "model_best.pth.tar")
    state = torch.load(path, weights_only=False)
    del state["model"][1]["convs1.2.bias"]
    state["model"][0]["layer.attention.output.LayerNorm.weight"] = torch.ones(16)  # an HF-style name
    _save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_model("adv-2048", config=tiny_config("adv-2048"), checkpoint=path, device="cpu")
    message = str(err.value)
    assert "layer.attention.output.LayerNorm.weight" in message and "model[0] (img_enc)" in message


def test_missing_text_key_is_named(tmp_path, tiny_config, original_checkpoint):
    source = _source("adv-2048", tiny_config)
    path = original_checkpoint(source.encoder, tmp_path / "model_best.pth.tar")
    state = torch.load(path, weights_only=False)
    del state["model"][1]["bert.pooler.dense.bias"]
    _save(state, path)
    with pytest.raises(CheckpointError, match=r"model\[1\] \(txt_enc\).*missing keys: bert\.pooler\.dense\.bias"):
        load_model("adv-2048", config=tiny_config("adv-2048"), checkpoint=path, device="cpu")


def test_wrong_code_length_points_to_the_right_model(tmp_path, tiny_config, original_checkpoint):
    source = _source("adv-64", tiny_config)  # tiny adv-64 keeps 64 bits
    path = original_checkpoint(source.encoder, tmp_path / "model_best.pth.tar")
    with pytest.raises(CheckpointError, match="adv-64 checkpoint"):
        load_model("adv-2048", config=tiny_config("adv-2048"), checkpoint=path, device="cpu")


def test_opt_disagreeing_with_config_is_reported(tmp_path, tiny_config, original_checkpoint):
    source = _source("adv-64", tiny_config)
    path = original_checkpoint(source.encoder, tmp_path / "model_best.pth.tar", max_words=40)
    with pytest.raises(CheckpointError, match=r"max_words: checkpoint 40, config 32.*\"max_words\": 40"):
        load_model("adv-64", config=tiny_config("adv-64"), checkpoint=path, device="cpu")
    loaded = load_model("adv-64", config=tiny_config("adv-64", max_words=40), checkpoint=path, device="cpu")
    assert loaded.encoder.tokenize(["a man"])[0].shape == (1, 40)


def test_screen_checkpoint_is_refused(tmp_path, tiny_config, original_checkpoint):
    source = _source("adv-64", tiny_config)
    path = original_checkpoint(source.encoder, tmp_path / "model_best.pth.tar")
    state = torch.load(path, weights_only=False)
    state["model"][0] = {"backbone.fc.weight": torch.zeros(64, 2048), "backbone.fc.bias": torch.zeros(64)}
    _save(state, path)
    with pytest.raises(CheckpointError, match="adv-screen"):
        load_model("adv-64", config=tiny_config("adv-64"), checkpoint=path, device="cpu")


def test_not_an_adv_checkpoint(tmp_path, tiny_config):
    path = _save({"state_dict": {}}, tmp_path / "other.pth.tar")
    with pytest.raises(CheckpointError, match="not an ADV checkpoint"):
        load_model("adv-64", config=tiny_config("adv-64"), checkpoint=path, device="cpu")


class NotAllowed:
    """Any class outside the allow-list: loading must refuse to import it."""


def test_unsafe_pickle_is_refused(tmp_path, tiny_config):
    path = _save({"model": [{}, {}], "opt": NotAllowed()}, tmp_path / "evil.pth.tar")
    with pytest.raises(CheckpointError, match="allow-list"):
        load_model("adv-64", config=tiny_config("adv-64"), checkpoint=path, device="cpu")
