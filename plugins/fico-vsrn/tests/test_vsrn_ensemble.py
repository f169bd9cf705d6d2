"""vsrn-ensemble: one embedding whose inner product is the mean of the two members' similarities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from vsrn_originals import SPECIALS, write_checkpoint, write_vocab_pickle

from fico_registry import load_model
from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.testing import check_model

WORDS = ["a", "red", "circle", "blue", "square", "two", "green", "triangles", "next", "to", "."]
CAPTIONS = ["a red circle", "two green triangles next to a blue square .", "a square", "red"]


def regions(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(0.5, 1.0, size=(n, 36, 2048)).astype(np.float32)


def write_members(folder: Path, data_name: str = "f30k_precomp") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    write_vocab_pickle(folder / f"{data_name}_vocab.pkl", WORDS)
    n = len(SPECIALS) + len(WORDS)
    return [
        write_checkpoint(folder / f"model_fliker_{k}.pth.tar", vocab_size=n, data_name=data_name, seed=10 * k)
        for k in (1, 2)
    ]


def original_average(img1: np.ndarray, cap1: np.ndarray, img2: np.ndarray, cap2: np.ndarray) -> np.ndarray:
    """evaluation_models.py: d = (numpy.dot(im, captions.T) + numpy.dot(im_2, captions2.T)) / 2."""
    return (np.dot(img1, cap1.T) + np.dot(img2, cap2.T)) / 2


def test_tiny_conforms() -> None:
    model = check_model("vsrn-ensemble", image_batch=regions())
    assert model.encoder.dim == 16 and model.spec.dim == 4096 and model.spec.measure == "inner_product"


def test_inner_product_is_the_average_of_the_members(tmp_path: Path) -> None:
    paths = write_members(tmp_path / "flickr")
    ensemble = load_model("vsrn-ensemble", config="tiny", checkpoint=tmp_path / "flickr", device="cpu")
    members = [load_model("vsrn", config="tiny", checkpoint=p, device="cpu") for p in paths]
    v = regions()
    img, txt = ensemble.encode_images(v), ensemble.encode_texts(CAPTIONS)
    m_img = [m.encode_images(v) for m in members]
    m_txt = [m.encode_texts(CAPTIONS) for m in members]
    assert not torch.allclose(m_img[0] @ m_txt[0].T, m_img[1] @ m_txt[1].T)  # the members differ
    expected = original_average(*(t.double().numpy() for t in (m_img[0], m_txt[0], m_img[1], m_txt[1])))
    np.testing.assert_allclose((img @ txt.T).double().numpy(), expected, atol=1e-6, rtol=1e-5)
    # and, each member being unit-norm, the concatenation is unit-norm: cosine gives the same ranking
    torch.testing.assert_close(img.norm(dim=1), torch.ones(len(v)))


def test_identity_holds_for_any_member_embeddings() -> None:
    """The algebra itself: <[a, a'] / sqrt2, [b, b'] / sqrt2> = (<a, b> + <a', b'>) / 2, for any widths."""
    from fico_vsrn.ensemble import MEMBER_SCALE

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=gen, dtype=torch.float64), torch.randn(9, 5, generator=gen, dtype=torch.float64)
    a2, b2 = (
        torch.randn(7, 3, generator=gen, dtype=torch.float64),
        torch.randn(9, 3, generator=gen, dtype=torch.float64),
    )
    joint_img = torch.cat([a * MEMBER_SCALE, a2 * MEMBER_SCALE], dim=1)
    joint_txt = torch.cat([b * MEMBER_SCALE, b2 * MEMBER_SCALE], dim=1)
    torch.testing.assert_close(joint_img @ joint_txt.T, (a @ b.T + a2 @ b2.T) / 2)


def test_random_members_differ() -> None:
    ensemble = load_model("vsrn-ensemble", config="tiny", device="cpu").encoder
    first, second = ensemble.members
    assert not torch.equal(first.img_enc.fc.weight, second.img_enc.fc.weight)


def test_member_checkpoints_config(tmp_path: Path) -> None:
    paths = write_members(tmp_path / "coco", data_name="coco_precomp")
    config = {"member_checkpoints": [str(p) for p in paths]}
    model = load_model("vsrn-ensemble", config=config, device="cpu")
    assert model.encoder.dim == 16
    assert [m.arch["data_name"] for m in model.encoder.members] == ["coco_precomp", "coco_precomp"]


def test_folder_must_hold_two_checkpoints(tmp_path: Path) -> None:
    write_members(tmp_path)
    (tmp_path / "model_fliker_3.pth.tar").write_bytes((tmp_path / "model_fliker_1.pth.tar").read_bytes())
    with pytest.raises(CheckpointError, match="exactly two checkpoint files"):
        load_model("vsrn-ensemble", config="tiny", checkpoint=tmp_path, device="cpu")
    with pytest.raises(CheckpointError, match="must be a folder"):
        load_model("vsrn-ensemble", config="tiny", checkpoint=tmp_path / "model_fliker_3.pth.tar", device="cpu")
