"""Loading: transformers folders, LAVIS .pth (renamed in memory), hub ids offline; strictness."""

import json

import pytest
import torch
from blip2_fixtures import save_lavis, to_lavis_state_dict, write_vocab
from fico_blip2.plugin import DEFAULT, TINY
from safetensors.torch import load_file, save_file

from fico_registry import load_model
from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.testing import sample_batch


def _outputs(model):
    images, captions = sample_batch("pixels", 3, seed=5), sample_batch("text", 3, seed=6)
    img, txt = model.encode_images(images), model.encode_texts(captions)
    return img, txt, model.score_pairs(img, txt)


def test_lavis_pth_equals_transformers_folder_exactly(lavis_pth, hf_folder):
    from_lavis = _outputs(load_model("blip2", config="tiny", checkpoint=lavis_pth, device="cpu"))
    from_hf = _outputs(load_model("blip2", config="tiny", checkpoint=hf_folder, device="cpu"))
    for a, b in zip(from_lavis[:2], from_hf[:2], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert torch.equal(from_lavis[2], from_hf[2])


def test_lavis_weights_land_where_they_should(lavis_pth, tiny_model):
    model = load_model("blip2", config="tiny", checkpoint=lavis_pth, device="cpu")
    loaded, reference = model.encoder.core.model.state_dict(), tiny_model.state_dict()
    assert loaded.keys() == reference.keys()
    for key in reference:
        assert torch.equal(loaded[key], reference[key]), key


def test_bare_lavis_state_dict_loads(tmp_path, tiny_model):
    write_vocab(tmp_path / "vocab.txt")
    path = tmp_path / "bare.pth"
    torch.save(to_lavis_state_dict(tiny_model.state_dict()), path)
    load_model("blip2-nf", config="tiny", checkpoint=path, device="cpu")


@pytest.mark.parametrize(
    "key",
    ["Qformer.bert.encoder.layer.1.output_query.dense.weight", "visual_encoder.blocks.0.attn.q_bias", "itm_head.bias"],
)
def test_missing_lavis_key_is_named(tmp_path, tiny_model, key):
    state = to_lavis_state_dict(tiny_model.state_dict())
    del state[key]
    path = save_lavis(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="missing keys: " + key.replace(".", r"\.")):
        load_model("blip2", config="tiny", checkpoint=path, device="cpu")


def test_unexpected_lavis_key_is_named(tmp_path, tiny_model):
    state = to_lavis_state_dict(tiny_model.state_dict())
    state["Qformer.bert.encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(1)
    path = save_lavis(state, tmp_path / "extra.pth")
    with pytest.raises(
        CheckpointError, match=r"unexpected keys: Qformer\.bert\.encoder\.layer\.0\.attention\.self\.rotary"
    ):
        load_model("blip2", config="tiny", checkpoint=path, device="cpu")


def test_lavis_file_without_vit_says_so(tmp_path, tiny_model):
    state = {
        k: v for k, v in to_lavis_state_dict(tiny_model.state_dict()).items() if not k.startswith("visual_encoder.")
    }
    path = save_lavis(state, tmp_path / "blip2_pretrained.pth")
    with pytest.raises(CheckpointError, match="no ViT weights") as info:
        load_model("blip2", config="tiny", checkpoint=path, device="cpu")
    assert "freeze_vit" in str(info.value)


def test_lavis_image_size_mismatch_explains(tmp_path, tiny_model):
    path = save_lavis(to_lavis_state_dict(tiny_model.state_dict()), tmp_path / "ckpt.pth")
    write_vocab(tmp_path / "vocab.txt")
    with pytest.raises(CheckpointError, match=r"position_embedding.*image_size"):
        load_model("blip2", config={**TINY, "image_size": 20}, checkpoint=path, device="cpu")


def test_not_a_lavis_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError):
        load_model("blip2", config="tiny", checkpoint=path, device="cpu")


def test_transformers_folder_with_a_missing_weight_is_refused(tmp_path, hf_folder):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text((hf_folder / "config.json").read_text())
    state = load_file(str(hf_folder / "model.safetensors"))
    del state["itm_head.weight"]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing keys: itm_head\.weight"):
        load_model("blip2", config="tiny", checkpoint=folder, device="cpu")


def test_folder_without_weights_names_the_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    with pytest.raises(CheckpointError, match=r"config\.json and model\.safetensors"):
        load_model("blip2", config="tiny", checkpoint=tmp_path, device="cpu")


def test_single_transformers_weights_file(tmp_path, tiny_model):
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    model = load_model("blip2-nf", config="tiny", checkpoint=tmp_path / "weights.safetensors", device="cpu")
    assert torch.equal(model.encoder.core.model.itm_head.weight, tiny_model.itm_head.weight)


def test_hub_id_offline_is_one_clear_line():
    with pytest.raises(CheckpointError) as info:
        load_model("blip2", config="tiny", checkpoint="Salesforce/blip2-itm-vit-g-coco", device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert "config.json" in message and "vocab.txt" in message and "checkpoint=FOLDER" in message


def test_known_lavis_checkpoint_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FICO_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"blip2_finetune_coco\.pth"):
        load_model("blip2", config="tiny", checkpoint="lavis-coco", device="cpu")


def test_lavis_without_vocab_explains(tmp_path, tiny_model):
    path = save_lavis(to_lavis_state_dict(tiny_model.state_dict()), tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointError, match=r"vocab\.txt.*vocab_file"):
        load_model("blip2", config={**TINY, "builtin_vocab": None}, checkpoint=path, device="cpu")


def test_vocab_file_config_key(tmp_path, tiny_model):
    path = save_lavis(to_lavis_state_dict(tiny_model.state_dict()), tmp_path / "ckpt.pth")
    vocab = write_vocab(tmp_path / "my-vocab.txt")
    model = load_model("blip2", config={**TINY, "builtin_vocab": None, "vocab_file": str(vocab)}, checkpoint=path)
    ids = model.encode_texts(["a red star"])["input_ids"][0]
    assert model.encoder.captions.tokenizer.convert_ids_to_tokens(ids[:5].tolist()) == [
        "[CLS]",
        "a",
        "red",
        "star",
        "[SEP]",
    ]


def test_vocab_larger_than_the_embedding_table_is_refused(tmp_path, tiny_model):
    path = save_lavis(to_lavis_state_dict(tiny_model.state_dict()), tmp_path / "ckpt.pth")
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(200)]))
    with pytest.raises(ConfigError, match="Q-Former embeds only 99"):
        load_model("blip2", config="tiny", checkpoint=path)


def test_full_size_lavis_names_cover_the_published_architecture():
    """On the meta device (allocates nothing): every transformers parameter of the COCO model has
    a LAVIS name, the renaming is one-to-one, and the shapes are those of the LAVIS file."""
    from fico_blip2.architecture import blip2_config, import_transformers
    from fico_blip2.lavis_keys import hf_name_for, lavis_names_for

    with torch.device("meta"):
        model = import_transformers().Blip2ForImageTextRetrieval(blip2_config(DEFAULT))
    state = model.state_dict()
    lavis = {name: key for key in state for name in lavis_names_for(key)}
    assert len(lavis) == len(state) + 39  # q_bias and v_bias per EVA block
    assert all(hf_name_for(name) in (key, None) for name, key in lavis.items())
    assert sum(name.startswith("visual_encoder.blocks.") and name.endswith(".attn.q_bias") for name in lavis) == 39
    assert sum(".crossattention.self.key.weight" in name for name in lavis) == 6
    shapes = {
        "vision_model.embeddings.position_embedding": (1, 677, 1408),
        "embeddings.word_embeddings.weight": (30523, 768),
        "query_tokens": (1, 32, 768),
        "qformer.encoder.layer.10.crossattention.attention.key.weight": (768, 1408),
        "vision_projection.weight": (256, 768),
        "itm_head.weight": (2, 768),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
