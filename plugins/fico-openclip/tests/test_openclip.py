"""fico-openclip: cards from the manifest, conformance, numerics against open_clip, checkpoints, offline errors."""

from __future__ import annotations

import copy
import json

import pytest
from fico_openclip.catalog import TINY_RESNET, TINY_VIT, load_manifest
from fico_openclip.manifest import MANIFEST_PATH, build_manifest, card_name, dumps

from fico_registry import get_model_spec, load_model
from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.fixtures import list_models_in_fresh_process
from fico_registry.plugin_api.testing import check_model, sample_batch

# -- cards (no torch) ------------------------------------------------------------------------


def test_plugin_import_is_light_and_fast():
    """Discovery reads JSON only: torch / open_clip / transformers stay unimported."""
    report = list_models_in_fresh_process("fico_openclip.plugin", plugin="openclip", distribution="fico-openclip")
    assert report["heavy"] == [], f"listing models imported {report['heavy']}"
    assert report["n"] == len(load_manifest()["architectures"])
    assert report["seconds"] < 2.0, report  # about 0.15 s here, core included


def test_manifest_matches_installed_open_clip():
    expected = dumps(build_manifest())
    assert MANIFEST_PATH.read_text() == expected, (
        "architectures.json is stale: run `python plugins/fico-openclip/scripts/make_manifest.py`"
    )


def test_every_architecture_has_a_card():
    import open_clip

    for arch in open_clip.list_models():
        spec = get_model_spec(card_name(arch))
        assert spec.dim == open_clip.get_model_config(arch)["embed_dim"]
        assert spec.measure == "cosine" and str(spec.output) == "continuous" and str(spec.family) == "vlp"
        assert set(spec.checkpoints) == set(open_clip.list_pretrained_tags_by_model(arch))
        assert spec.configs["default"] == {"arch": arch}


def test_card_details_vit_b_32():
    spec = get_model_spec("openclip-ViT-B-32")  # any case of the open_clip name
    assert spec.name == "openclip-vit-b-32" and spec.dim == 512
    assert spec.default_checkpoint == "openai"
    openai = spec.checkpoints["openai"]
    assert openai.source == "timm/vit_base_patch32_clip_224.openai" and openai.format == "open_clip"
    assert "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af" in openai.description
    assert spec.checkpoints["laion2b_s34b_b79k"].source == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert get_model_spec("openclip-rn50").configs["tiny"]["model_cfg"] == TINY_RESNET
    assert get_model_spec("openclip-vit-l-14").dim == 768


# -- conformance and numerics ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["openclip-vit-b-32", "openclip-rn50", "openclip-vit-b-16-siglip", "openclip-coca_vit-b-32"]
)
def test_tiny_conforms(name):
    model = check_model(name)
    assert model.encoder.dim == 8


def _reference(model_cfg, state_dict, images, texts, **kwargs):
    """The same weights through open_clip directly: its CLIP class, eval transform and tokenizer."""
    import open_clip
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    ref = open_clip.CLIP(**copy.deepcopy(model_cfg), **kwargs).eval()
    ref.load_state_dict(state_dict)
    transform = image_transform_v2(PreprocessCfg(size=model_cfg["vision_cfg"]["image_size"]), is_train=False)
    tokenizer = open_clip.SimpleTokenizer(context_length=model_cfg["text_cfg"]["context_length"])
    with torch.no_grad():
        img = ref.encode_image(torch.stack([transform(i) for i in images]), normalize=True)
        txt = ref.encode_text(tokenizer(texts), normalize=True)
    return img, txt


def test_tiny_equals_open_clip_encode_normalised():
    model = load_model("openclip-vit-b-32", config="tiny", device="cpu")
    images, texts = sample_batch("pixels", 5), sample_batch("text", 5)
    img_ref, txt_ref = _reference(TINY_VIT, model.encoder.model.state_dict(), images, texts)
    img, txt = model.encode_images(images), model.encode_texts(texts)
    assert (img - img_ref).abs().max().item() <= 1e-6
    assert (txt - txt_ref).abs().max().item() <= 1e-6
    # the stacked-tensor path (preprocessing done elsewhere) gives the same rows
    import torch

    stacked = torch.stack([model.encoder.preprocess_image(i) for i in images])
    assert torch.equal(model.encode_images(stacked), img)


# -- checkpoints ----------------------------------------------------------------------------


def _tiny_state(seed=0, **kwargs):
    import open_clip
    import torch

    torch.manual_seed(seed)
    return open_clip.CLIP(**copy.deepcopy(TINY_VIT), **kwargs).eval().state_dict()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_state_dict_round_trip(tmp_path, suffix):
    import torch

    state = _tiny_state(seed=3)
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    model = check_model("openclip-vit-b-32", checkpoint=path)
    images, texts = sample_batch("pixels", 3), sample_batch("text", 3)
    img_ref, txt_ref = _reference(TINY_VIT, state, images, texts)
    assert (model.encode_images(images) - img_ref).abs().max().item() <= 1e-6
    assert (model.encode_texts(texts) - txt_ref).abs().max().item() <= 1e-6


def test_state_dict_mismatch_is_a_checkpoint_error(tmp_path):
    import torch

    state = _tiny_state()
    state.pop("text_projection")
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="text_projection"):
        load_model("openclip-vit-b-32", config="tiny", checkpoint=tmp_path / "broken.pt", device="cpu")


def _open_clip_folder(folder, state):
    from safetensors.torch import save_file

    folder.mkdir()
    config = {"model_cfg": TINY_VIT, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))


def test_local_open_clip_folder(tmp_path):
    """A folder in open_clip's hub layout carries its own config: the card's architecture is ignored."""
    from fico_openclip.model import build

    state = _tiny_state(seed=5)
    _open_clip_folder(tmp_path / "repo", state)
    model = check_model("openclip-vit-b-32", config="default", checkpoint=tmp_path / "repo")
    assert model.encoder.dim == 8
    assert tuple(model.encoder.model.visual.preprocess_cfg["mean"]) == (0.5, 0.5, 0.5)
    spec = get_model_spec("openclip-vit-b-32")
    prefixed = build(spec=spec, config=dict(spec.configs["default"]), checkpoint=f"local-dir:{tmp_path / 'repo'}")
    texts = sample_batch("text", 3)
    assert (prefixed.encode_texts(texts) - model.encode_texts(texts)).abs().max().item() == 0


def _fake_hub_cache(root, repo, state):
    """The layout huggingface_hub reads offline: refs/main -> snapshots/<commit>/<file>."""
    from safetensors.torch import save_file

    base = root / ("models--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "open_clip_model.safetensors"))


def test_pretrained_tag_from_the_hub_cache_uses_the_tags_quick_gelu(tmp_path, monkeypatch):
    """'openai' resolves through open_clip's registry to its hub repo, read from the local cache."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("FICO_HOME", str(tmp_path / "fico"))
    state = _tiny_state(seed=7, quick_gelu=True)
    _fake_hub_cache(tmp_path / "hub", "timm/vit_base_patch32_clip_224.openai", state)
    model = check_model("openclip-vit-b-32", checkpoint="openai")
    images, texts = sample_batch("pixels", 3), sample_batch("text", 3)
    img_ref, txt_ref = _reference(TINY_VIT, state, images, texts, quick_gelu=True)
    assert (model.encode_images(images) - img_ref).abs().max().item() <= 1e-6
    assert (model.encode_texts(texts) - txt_ref).abs().max().item() <= 1e-6
    _, txt_gelu = _reference(TINY_VIT, state, images, texts, quick_gelu=False)
    assert (model.encode_texts(texts) - txt_gelu).abs().max().item() > 1e-4  # the activation matters


def test_pretrained_tag_brings_its_preprocessing(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("FICO_HOME", str(tmp_path / "fico"))
    _fake_hub_cache(tmp_path / "hub", "timm/ViT-B-16-SigLIP", _tiny_state())
    model = load_model("openclip-vit-b-16-siglip", config="tiny", checkpoint="webli", device="cpu")
    cfg = model.encoder.model.visual.preprocess_cfg
    assert tuple(cfg["mean"]) == (0.5, 0.5, 0.5) and cfg["resize_mode"] == "squash"


def test_offline_hub_tag_is_one_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("FICO_HOME", str(tmp_path / "fico"))
    with pytest.raises(CheckpointError) as info:
        load_model("openclip-vit-b-32", checkpoint="laion2b_s34b_b79k", device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message and "checkpoint=PATH" in message


def test_unknown_hub_repo_offline_is_a_checkpoint_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(CheckpointError, match=r"open_clip repo someone/not-cached is not in the local") as info:
        load_model("openclip-vit-b-32", config="default", checkpoint="someone/not-cached", device="cpu")
    assert "\n" not in str(info.value)


def test_torchscript_release_is_refused_with_a_pointer_to_the_hub_copy(tmp_path):
    import torch

    archive = tmp_path / "ViT-B-32.pt"  # the name of OpenAI's release file
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(archive))
    with pytest.raises(CheckpointError, match=r"TorchScript.*timm/vit_base_patch32_clip_224\.openai"):
        load_model("openclip-vit-b-32", config="tiny", checkpoint=archive, device="cpu")


def test_bf16_precision_runs_close_to_fp32():
    fp32 = load_model("openclip-vit-b-32", config="tiny", device="cpu")
    bf16 = load_model("openclip-vit-b-32", config={**fp32.config, "precision": "bf16"}, device="cpu")
    bf16.encoder.model.load_state_dict(fp32.encoder.model.state_dict())
    texts = sample_batch("text", 3)
    out = bf16.encode_texts(texts)
    assert out.dtype.is_floating_point and (out - fp32.encode_texts(texts)).abs().max().item() < 0.1


@pytest.mark.parametrize(
    "name", ["openclip-vit-b-32", "openclip-rn50", "openclip-eva02-b-16", "openclip-mobileclip-s1"]
)
def test_default_config_builds_the_published_architecture_on_meta(name):
    """The full-size default, built on the meta device (nothing allocated): output width = card dim."""
    from fico_openclip.model import build

    spec = get_model_spec(name)
    encoder = build(spec=spec, config=dict(spec.configs["default"]), checkpoint=None, device="meta")
    images = sample_batch("pixels", 2)
    assert tuple(encoder.encode_images(images).shape) == (2, spec.dim) == (2, encoder.dim)
    assert tuple(encoder.encode_texts(["a dog", "a cat"]).shape) == (2, spec.dim)


def test_hub_only_tokenizer_offline_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match=r"tokenizer of ViT-B-16-SigLIP \(hf:timm/ViT-B-16-SigLIP\)"):
        load_model("openclip-vit-b-16-siglip", device="meta")
