"""ADV screen model: ResNet-50 on pixels ('backbone.*') + the BERT text branch."""

from __future__ import annotations

import pytest
import torch

from fico_registry import load_model
from fico_registry.errors import CheckpointError, InputError, ShapeError
from fico_registry.plugin_api.testing import check_model, sample_batch


def test_conforms():
    model = check_model("adv-screen")
    assert model.encoder.bits == 16


def test_preprocessed_tensors_give_the_same_codes():
    model = load_model("adv-screen", config="tiny", device="cpu")
    images = sample_batch("pixels", 3)
    stacked = torch.stack([model.encoder.preprocess_image(img) for img in images])
    assert stacked.shape == (3, 3, 32, 32)
    assert torch.equal(model.encode_images(stacked), model.encode_images(images))
    with pytest.raises(ShapeError):
        model.encode_images(stacked[:, :, :16])
    with pytest.raises(InputError):
        model.encode_images("not images")


def test_round_trip(tmp_path, tiny_config, original_checkpoint, captions):
    source = load_model("adv-screen", config="tiny", device="cpu")
    with torch.no_grad():
        for p in source.encoder.image_net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = original_checkpoint(
        source.encoder, tmp_path / "model_best.pth.tar", model_name="./runs/runX/checkpoint", image_size=32
    )
    images = sample_batch("pixels", 3)
    loaded = check_model("adv-screen", checkpoint=path)
    assert torch.equal(loaded.encoder.image_activations(images), source.encoder.image_activations(images))
    assert torch.equal(loaded.encode_texts(captions), source.encode_texts(captions))
    # a screen checkpoint is not a re-rank model, and the other way round
    with pytest.raises(CheckpointError, match="adv-screen"):
        load_model("adv-64", config=tiny_config("adv-64"), checkpoint=path, device="cpu")


def test_rerank_checkpoint_is_refused(tmp_path, tiny_config, original_checkpoint):
    source = load_model("adv-2048", config="tiny", device="cpu")
    path = original_checkpoint(source.encoder, tmp_path / "model_best.pth.tar")
    with pytest.raises(CheckpointError, match="adv-2048 / adv-64"):
        load_model("adv-screen", config="tiny", checkpoint=path, device="cpu")


def test_image_size_comes_from_the_run(tmp_path, original_checkpoint):
    source = load_model("adv-screen", config="tiny", device="cpu")
    path = original_checkpoint(source.encoder, tmp_path / "model_best.pth.tar", image_size=256)
    with pytest.raises(CheckpointError, match="image_size: checkpoint 256, config 32"):
        load_model("adv-screen", config="tiny", checkpoint=path, device="cpu")


def test_published_image_keys_are_torchvision_resnet50():
    from fico_adv.screen import ResNetEncoder

    from fico_registry.plugin_api.compat import ensure_torchvision

    ensure_torchvision()
    import torchvision

    with torch.device("meta"):
        ours = ResNetEncoder(256)
        reference = torchvision.models.resnet50(weights=None)
    expected = {f"backbone.{k}": tuple(v.shape) for k, v in reference.state_dict().items()}
    expected["backbone.fc.weight"], expected["backbone.fc.bias"] = (256, 2048), (256,)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
