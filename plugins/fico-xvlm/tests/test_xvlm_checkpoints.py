"""Loading original-layout checkpoints: exact placement, strictness, errors that name the key."""

import pytest
import torch
from fico_xvlm.architecture import XVLMRetrieval
from fico_xvlm.plugin import DEFAULT, PRETRAIN_224, TINY
from fico_xvlm.weights import original_state_dict
from xvlm_fixtures import (
    INDEX,
    original_layout,
    retrieval_config,
    save_retrieval_checkpoint,
    write_vocab,
)

from fico_registry import load_model
from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.testing import sample_batch


def _outputs(model):
    images, captions = sample_batch("pixels", 3, seed=5), sample_batch("text", 3, seed=6)
    img, txt = model.encode_images(images), model.encode_texts(captions)
    return img, txt, model.score_pairs(img, txt)


def test_weights_land_where_they_should(retrieval_pth, tiny_state):
    model = load_model("xvlm", config="tiny", checkpoint=retrieval_pth, device="cpu")
    loaded = original_state_dict(model.encoder.model)
    assert loaded.keys() == tiny_state.keys()
    for key, value in tiny_state.items():
        assert torch.equal(loaded[key], value), key  # derived buffers too: they equal the original's


@pytest.mark.parametrize("fixture", ["raw_th", "pretrain_th"])
def test_raw_and_pretrain_layouts_give_identical_outputs(request, retrieval_pth, fixture):
    reference = _outputs(load_model("xvlm", config="tiny", checkpoint=retrieval_pth, device="cpu"))
    other = _outputs(load_model("xvlm", config="tiny", checkpoint=request.getfixturevalue(fixture), device="cpu"))
    for a, b in zip(reference[:2], other[:2], strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(reference[2], other[2])


def _save(tmp_path, state, config=TINY):
    write_vocab(tmp_path / "vocab.txt")
    return save_retrieval_checkpoint(state, config, tmp_path / "broken.pth")


@pytest.mark.parametrize(
    "key",
    [
        "vision_encoder.layers.1.downsample.reduction.weight",  # X-VLM's name (timm's layers.2.downsample)
        "text_encoder.encoder.layer.3.crossattention.self.key.weight",
        "itm_head.3.bias",
        "temp",
    ],
)
def test_missing_key_is_named_by_its_original_name(tmp_path, tiny_state, key):
    state = dict(tiny_state)
    del state[key]
    with pytest.raises(CheckpointError, match="missing keys: " + key.replace(".", r"\.")):
        load_model("xvlm", config="tiny", checkpoint=_save(tmp_path, state), device="cpu")


# an extra key is named, and a head of another task (vqa_head) is not silently ignored
@pytest.mark.parametrize(
    ("key", "shape"), [("text_encoder.pooler.dense.weight", (12, 12)), ("vqa_head.0.weight", (2, 2))]
)
def test_unexpected_key_is_named(tmp_path, tiny_state, key, shape):
    state = {**tiny_state, key: torch.zeros(*shape)}
    with pytest.raises(CheckpointError, match="unexpected keys: " + key.replace(".", r"\.")):
        load_model("xvlm", config="tiny", checkpoint=_save(tmp_path, state), device="cpu")


def test_shape_mismatch_is_named(tmp_path, tiny_state):
    state = {**tiny_state, "vision_proj.weight": torch.zeros(7, 16)}
    with pytest.raises(CheckpointError, match=r"shape mismatches: vision_proj\.weight: checkpoint \(7, 16\)"):
        load_model("xvlm", config="tiny", checkpoint=_save(tmp_path, state), device="cpu")


def test_other_window_size_is_explained(tmp_path, tiny_state):
    with pytest.raises(CheckpointError, match="window / image size differ"):
        load_model("xvlm", config={**TINY, "window_size": 2}, checkpoint=_save(tmp_path, tiny_state), device="cpu")


def test_corrupt_derived_buffer_is_refused(tmp_path, tiny_state):
    key = "vision_encoder.layers.0.blocks.1.attn_mask"
    state = {**tiny_state, key: torch.zeros_like(tiny_state[key])}
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.") + " differs"):
        load_model("xvlm", config="tiny", checkpoint=_save(tmp_path, state), device="cpu")


def test_saved_config_must_match(tmp_path, tiny_state):
    write_vocab(tmp_path / "vocab.txt")
    path = tmp_path / "ckpt.pth"
    torch.save({"model": tiny_state, "config": {**retrieval_config(TINY), "image_res": 384}}, path)
    with pytest.raises(CheckpointError, match=r"trained with image_res=384"):
        load_model("xvlm", config="tiny", checkpoint=path, device="cpu")
    torch.save({"model": tiny_state, "config": {**retrieval_config(TINY), "use_roberta": True}}, path)
    with pytest.raises(CheckpointError, match="RoBERTa"):
        load_model("xvlm", config="tiny", checkpoint=path, device="cpu")


def test_not_a_checkpoint(tmp_path):
    write_vocab(tmp_path / "vocab.txt")
    torch.save({"optimizer": {}, "epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an X-VLM checkpoint"):
        load_model("xvlm", config="tiny", checkpoint=tmp_path / "other.pth", device="cpu")


def test_arbitrary_pickles_are_refused(tmp_path, tiny_state):
    write_vocab(tmp_path / "vocab.txt")
    torch.save({"model": tiny_state, "config": {"loader": pytest.raises}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="allow-list"):
        load_model("xvlm", config="tiny", checkpoint=tmp_path / "evil.pth", device="cpu")


@pytest.mark.parametrize("config", ["tiny", "default"])
def test_hub_id_is_one_clear_line(config):
    with pytest.raises(CheckpointError) as info:
        load_model("xvlm", config=config, checkpoint="zengyan-97/X-VLM", device="cpu")
    message = str(info.value)
    assert "\n" not in message and "not hub ids" in message and "checkpoint=PATH" in message


def test_missing_vocab_names_the_file(tmp_path, tiny_state):
    path = tmp_path / "checkpoint_best.pth"
    save_retrieval_checkpoint(tiny_state, TINY, path)
    with pytest.raises(CheckpointError) as info:  # the tiny built-in vocabulary switched off
        load_model("xvlm", config={**TINY, "builtin_vocab": None}, checkpoint=path, device="cpu")
    assert "vocab.txt" in str(info.value) and "\n" not in str(info.value)


def test_known_checkpoint_not_on_disk_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FICO_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"xvlm_16m_retrieval_coco\.pth"):
        load_model("xvlm", config="coco", checkpoint="coco", device="cpu")


def test_config_typos_are_refused():
    with pytest.raises(ConfigError, match="unknown config key"):
        load_model("xvlm", config={**TINY, "windowsize": 4}, device="cpu")


def _layout_of_our_model(config):
    with torch.device("meta"):
        model = XVLMRetrieval(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in original_state_dict(model).items()}


@pytest.mark.parametrize("config", [DEFAULT, PRETRAIN_224, TINY], ids=["default-384", "pretrain-224", "tiny"])
def test_full_size_keys_and_shapes_match_the_published_layout(config):
    """Built on the meta device: no memory, every original key with its published shape."""
    ours = _layout_of_our_model(config)
    published = original_layout(config)
    assert sorted(ours) == sorted(published)
    for key, (shape, kind) in published.items():
        assert ours[key][0] == shape, key
        assert (ours[key][1] == torch.int64) == (kind == INDEX), key


def test_published_sizes():
    published = original_layout(DEFAULT)
    assert published["vision_proj.weight"][0] == (256, 1024)
    assert published["text_encoder.encoder.layer.6.crossattention.self.key.weight"][0] == (768, 1024)
    assert published["vision_encoder.layers.2.blocks.17.attn_mask"][0] == (4, 144, 144)
    assert "vision_encoder.layers.3.blocks.1.attn_mask" not in published  # 12x12 grid = one window, no shift
    n_params = sum(
        torch.Size(s).numel() for k, (s, kind) in published.items() if kind != INDEX and "attn_mask" not in k
    )
    assert 200e6 < n_params < 230e6  # Swin-B 87M + BERT-base 110M + cross-attention + heads


def test_pretrain_checkpoint_loads_without_its_heads(pretrain_th):
    model = load_model("xvlm-nf", config="tiny", checkpoint=pretrain_th, device="cpu")
    names = set(original_state_dict(model.encoder.model))
    assert not any(k.startswith(("bbox_head.", "text_encoder.cls.", "text_encoder.bert.")) for k in names)
