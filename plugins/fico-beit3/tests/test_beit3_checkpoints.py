"""unilm checkpoint files: layouts, strict loading, safe unpickling, where beit3.spm is found."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from beit3_fixtures import save_unilm, tiny_file_config
from fico_beit3.plugin import TINY

from fico_registry import load_model
from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.testing import check_model, sample_batch


class NotAllowed:
    """Stands for any pickled object a checkpoint should not be able to smuggle in."""


def _copy_with_spm(checkpoint: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint.parent / "beit3.spm", folder / "beit3.spm")
    return folder / name


def test_unilm_checkpoint_conforms(unilm_checkpoint):
    model = check_model("beit3", checkpoint=unilm_checkpoint)
    assert model.encoder.tokenizer.source == str(unilm_checkpoint.parent / "beit3.spm")


def test_round_trip_reproduces_the_saved_network(unilm_checkpoint, tiny_network):
    model = load_model("beit3", config="tiny", checkpoint=unilm_checkpoint, device="cpu")
    images, texts = sample_batch("pixels", 3), sample_batch("text", 3)
    pixels = model.encoder.preprocessor.batch(images)
    captions = model.encoder.tokenizer(texts)
    with torch.no_grad():
        want_images = tiny_network.encode_pixels(pixels)
        want_texts = tiny_network.encode_text_ids(captions.ids, captions.padding_mask)
    assert torch.equal(model.encode_images(images), want_images)
    assert torch.equal(model.encode_texts(texts), want_texts)
    assert torch.allclose(model.encode_images(images).norm(dim=-1), torch.ones(3))
    assert not any(p.requires_grad for p in model.encoder.network.parameters())


@pytest.mark.parametrize("key", ["module", None], ids=["module", "raw-state-dict"])
def test_other_unilm_layouts_load(tmp_path, unilm_checkpoint, tiny_network, key):
    path = save_unilm(tiny_network.state_dict(), _copy_with_spm(unilm_checkpoint, tmp_path, "ckpt.pth"), key=key)
    model = load_model("beit3", config="tiny", checkpoint=path, device="cpu")
    reference = load_model("beit3", config="tiny", checkpoint=unilm_checkpoint, device="cpu")
    texts = sample_batch("text", 2)
    assert torch.equal(model.encode_texts(texts), reference.encode_texts(texts))


def test_half_precision_weights_are_read_as_float32(tmp_path, unilm_checkpoint, tiny_network):
    half = {k: v.half() for k, v in tiny_network.state_dict().items()}
    path = save_unilm(half, _copy_with_spm(unilm_checkpoint, tmp_path, "half.pth"))
    model = load_model("beit3", config="tiny", checkpoint=path, device="cpu")
    assert all(p.dtype == torch.float32 for p in model.encoder.network.parameters())
    assert model.encode_images(sample_batch("pixels", 2)).dtype == torch.float32


def _broken(tmp_path, unilm_checkpoint, tiny_network, edit) -> Path:
    state = dict(tiny_network.state_dict())
    edit(state)
    return save_unilm(state, _copy_with_spm(unilm_checkpoint, tmp_path, "broken.pth"))


def test_missing_key_is_named(tmp_path, unilm_checkpoint, tiny_network):
    path = _broken(tmp_path, unilm_checkpoint, tiny_network, lambda s: s.pop("beit3.encoder.layer_norm.B.weight"))
    with pytest.raises(CheckpointError, match=r"missing keys: beit3\.encoder\.layer_norm\.B\.weight"):
        load_model("beit3", config="tiny", checkpoint=path, device="cpu")


def test_unexpected_key_is_named(tmp_path, unilm_checkpoint, tiny_network):
    path = _broken(tmp_path, unilm_checkpoint, tiny_network, lambda s: s.update({"head.weight": torch.zeros(2, 32)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys: head\.weight"):
        load_model("beit3", config="tiny", checkpoint=path, device="cpu")


def test_other_resolution_is_a_shape_mismatch(unilm_checkpoint):
    config = {**TINY, "image_size": 48}  # 36 patches + CLS + 2 rows instead of 16 + 1 + 2
    with pytest.raises(CheckpointError, match=r"embed_positions\.A\.weight: checkpoint \(19, 32\) vs model \(39, 32\)"):
        load_model("beit3", config=config, checkpoint=unilm_checkpoint, device="cpu")


def test_pickled_objects_are_refused(tmp_path, unilm_checkpoint, tiny_network):
    path = _copy_with_spm(unilm_checkpoint, tmp_path, "unsafe.pth")
    torch.save({"model": tiny_network.state_dict(), "extra": NotAllowed()}, path)
    with pytest.raises(CheckpointError, match="allow-list"):
        load_model("beit3", config="tiny", checkpoint=path, device="cpu")


def test_not_a_state_dict(tmp_path, unilm_checkpoint):
    path = _copy_with_spm(unilm_checkpoint, tmp_path, "odd.pth")
    torch.save({"epoch": 3, "note": "no weights"}, path)
    with pytest.raises(CheckpointError, match="non-tensor entries"):
        load_model("beit3", config="tiny", checkpoint=path, device="cpu")


def test_missing_sentencepiece_model_says_what_to_download(tmp_path, tiny_network):
    path = save_unilm(tiny_network.state_dict(), tmp_path / "beit3_base_patch16_384_coco_retrieval.pth")
    config = {**TINY, "builtin_spm": None}
    with pytest.raises(
        CheckpointError, match=r"download https://github\.com/addf400/files/releases/download/beit3/beit3\.spm"
    ):
        load_model("beit3", config=config, checkpoint=path, device="cpu")


def test_sentencepiece_model_from_fico_home(tmp_path, monkeypatch, unilm_checkpoint, tiny_network):
    home = tmp_path / "home"
    (home / "checkpoints").mkdir(parents=True)
    shutil.copy(unilm_checkpoint.parent / "beit3.spm", home / "checkpoints" / "beit3.spm")
    monkeypatch.setenv("FICO_HOME", str(home))
    path = save_unilm(tiny_network.state_dict(), tmp_path / "elsewhere.pth")
    model = load_model("beit3", config={**TINY, "builtin_spm": None}, checkpoint=path, device="cpu")
    assert model.encoder.tokenizer.source == str(home / "checkpoints" / "beit3.spm")


def test_known_checkpoint_not_downloaded_names_the_url():
    with pytest.raises(CheckpointError, match=r"beit3_base_patch16_384_f30k_retrieval\.pth"):
        load_model("beit3", checkpoint="f30k", device="cpu")


def test_hub_ids_are_refused():
    with pytest.raises(CheckpointError, match=r"unilm \.pth files only"):
        load_model("beit3", config="tiny", checkpoint="microsoft/beit3-base", device="cpu")


def test_spm_too_large_for_the_vocabulary(spm_file):
    with pytest.raises(ConfigError, match=r"wrong beit3\.spm"):
        load_model("beit3", config={**tiny_file_config(spm_file), "vocab_size": 20}, device="cpu")
