"""fico-hf-dual: cards, conformance, numerics against transformers, checkpoint folders, offline errors."""

from __future__ import annotations

import pytest
from fico_hf_dual.families import FAMILIES
from hf_fixtures import write_checkpoint_folder

from fico_registry import get_model_spec, load_model
from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.fixtures import list_models_in_fresh_process
from fico_registry.plugin_api.testing import check_model, sample_batch

NAMES = ["hf-clip", "hf-align", "hf-altclip", "hf-groupvit"]


def test_plugin_import_is_light():
    report = list_models_in_fresh_process("fico_hf_dual.plugin", plugin="hf-dual", distribution="fico-hf-dual")
    assert report["heavy"] == [], f"listing models imported {report['heavy']}"
    assert report["names"] == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_conforms(name):
    model = check_model(name)
    assert model.encoder.dim == 8
    # the tiny vocabulary and the tiny model agree on the number of token ids
    assert len(model.encoder.tokenizer) == model.encoder.model.config.text_config.vocab_size


@pytest.mark.parametrize("name", NAMES)
def test_default_architecture_width_matches_the_card(name):
    """The published layout, built on the meta device (nothing allocated)."""
    import torch
    from fico_hf_dual.model import _random_model

    spec = get_model_spec(name)
    family = FAMILIES[spec.extra["hf_family"]]
    with torch.device("meta"):
        model = _random_model(spec, family, spec.configs["default"]["architecture"]).eval()
        size = model.config.vision_config.image_size
        image = model.get_image_features(pixel_values=torch.zeros(1, 3, size, size)).pooler_output
    assert image.shape[-1] == spec.dim == model.config.projection_dim


def _reference(folder, family, images, texts, max_length):
    """The folder through transformers directly: the model's own get_*_features, then L2 norm."""
    import torch
    import torch.nn.functional as F
    import transformers

    model = getattr(transformers, family.model_class).from_pretrained(folder).eval()
    image_processor = transformers.AutoImageProcessor.from_pretrained(folder, backend="pil")
    tokenizer = getattr(transformers, family.tokenizer_class).from_pretrained(folder)
    with torch.no_grad():
        img = model.get_image_features(**image_processor(images=images, return_tensors="pt")).pooler_output
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        txt = model.get_text_features(**enc).pooler_output
    return F.normalize(img, dim=-1), F.normalize(txt, dim=-1)


@pytest.mark.parametrize("name", NAMES)
def test_save_pretrained_folder_round_trip(name, tmp_path):
    """A folder written by save_pretrained (+ original-format tokenizer files) loads and matches transformers."""
    import torch

    tiny = load_model(name, config="tiny", device="cpu")
    folder = write_checkpoint_folder(tiny, tmp_path / "checkpoint")
    loaded = check_model(name, checkpoint=folder)
    images, texts = sample_batch("pixels", 5), sample_batch("text", 5)
    family = FAMILIES[get_model_spec(name).extra["hf_family"]]
    img_ref, txt_ref = _reference(folder, family, images, texts, loaded.encoder.max_length)
    img, txt = loaded.encode_images(images), loaded.encode_texts(texts)
    assert (img - img_ref).abs().max().item() <= 1e-6
    assert (txt - txt_ref).abs().max().item() <= 1e-6
    # same weights as before saving
    assert (img - tiny.encode_images(images)).abs().max().item() <= 1e-6
    if name != "hf-altclip":  # AltCLIP's folder carries a trained sentencepiece model, not the tiny vocabulary
        assert (txt - tiny.encode_texts(texts)).abs().max().item() <= 1e-6
    # the stacked-tensor path (preprocessing done elsewhere) gives the same rows
    stacked = torch.stack([loaded.encoder.preprocess_image(i) for i in images])
    assert torch.equal(loaded.encode_images(stacked), img)


def test_missing_weight_is_a_checkpoint_error(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = write_checkpoint_folder(load_model("hf-clip", config="tiny", device="cpu"), tmp_path / "ck")
    weights = load_file(str(folder / "model.safetensors"))
    weights.pop("text_projection.weight")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing keys: text_projection\.weight"):
        load_model("hf-clip", config="tiny", checkpoint=folder, device="cpu")


def test_folder_without_tokenizer_names_the_files(tmp_path):
    tiny = load_model("hf-align", config="tiny", device="cpu")
    folder = tmp_path / "no-tokenizer"
    tiny.encoder.model.save_pretrained(folder)
    tiny.encoder.image_processor.save_pretrained(folder)
    with pytest.raises(CheckpointError, match=r"cannot read the tokenizer .*vocab\.txt or tokenizer\.json") as info:
        load_model("hf-align", checkpoint=folder, device="cpu")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "checkpoint", "hub_id"),
    [
        ("hf-clip", "openai-vit-base-patch32", "openai/clip-vit-base-patch32"),
        ("hf-align", "kakaobrain/align-base", "kakaobrain/align-base"),
        ("hf-altclip", "altclip", "BAAI/AltCLIP"),
        ("hf-groupvit", "gcc-yfcc", "nvidia/groupvit-gcc-yfcc"),
    ],
)
def test_offline_hub_id_is_one_clear_error(name, checkpoint, hub_id, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("FICO_HOME", str(tmp_path / "fico"))
    with pytest.raises(CheckpointError) as info:
        load_model(name, checkpoint=checkpoint, device="cpu")
    message = str(info.value)
    assert "\n" not in message and f"https://huggingface.co/{hub_id}" in message and "checkpoint=FOLDER" in message


def test_random_default_needs_the_processor_and_says_so(tmp_path, monkeypatch):
    """Random full-size weights still need the published tokenizer: it fails before allocating the model."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(CheckpointError, match="openai/clip-vit-base-patch32"):
        load_model("hf-clip", device="cpu")


def test_tiny_clip_vocab_is_the_head_of_the_real_clip_vocab():
    """The tiny CLIP vocabulary is exactly the first 512 entries of CLIP's (open_clip ships the real BPE)."""
    open_clip = pytest.importorskip("open_clip")
    from fico_hf_dual.tiny_vocab import clip_vocab

    real = open_clip.SimpleTokenizer().encoder
    tiny = clip_vocab()
    assert all(real[token] == index for token, index in tiny.items() if index < 512)
    assert len(real) == 49408 and real["<start_of_text>"] == 49406  # open_clip's names for the two specials
