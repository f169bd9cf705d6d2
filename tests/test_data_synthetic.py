"""The synthetic corpus: determinism, disjoint splits, caption variety, labels, region features, caching."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fico_registry.data import Corpus, load_dataset, synthetic
from fico_registry.data.synthetic import SHAPES, _projection, generate_scenes, region_features, render, scene_captions
from fico_registry.errors import DataFormatError


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Corpus:
    return synthetic(n_images=40, seed=3, root=tmp_path_factory.mktemp("syn") / "a")


def test_shape_of_the_corpus(small):
    assert (small.n_images, small.n_captions) == (40, 200)
    assert np.array_equal(small.captions_per_image, np.full(40, 5))
    assert small.class_names == list(SHAPES) and len(SHAPES) >= 8
    image = small.load_image(0)
    assert image.size == (128, 128) and image.mode == "RGB"
    regions = small.features["regions"]
    assert regions.shape == (40, 36, 2048)
    block = regions.rows(np.arange(5))
    assert block.dtype == np.float32 and (block >= 0).all()
    assert Path(regions.path).name == "test_ims.npy"


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    one = synthetic(n_images=12, seed=7, root=tmp_path / "one")
    two = synthetic(n_images=12, seed=7, root=tmp_path / "two")
    assert one.content_hash == two.content_hash
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    other = synthetic(n_images=12, seed=8, root=tmp_path / "three")
    assert other.content_hash != one.content_hash
    assert list(other.captions) != list(one.captions)
    assert _files(tmp_path / "three")["images/000000.png"] != _files(tmp_path / "one")["images/000000.png"]
    # prefix-stable: the first images of a bigger corpus are the same images and captions
    bigger = synthetic(n_images=20, seed=7, root=tmp_path / "four")
    assert list(bigger.captions[:60]) == list(one.captions)
    assert (tmp_path / "four" / "images" / "000011.png").read_bytes() == (
        tmp_path / "one" / "images" / "000011.png"
    ).read_bytes()
    assert np.array_equal(bigger.features["regions"].rows([11]), one.features["regions"].rows([11]))


def test_splits_are_disjoint_scenes():
    signatures = {split: {s.signature for s in generate_scenes(300, 0, split)} for split in ("train", "val", "test")}
    assert all(len(v) == 300 for v in signatures.values())  # distinct within a split
    assert not signatures["train"] & signatures["test"]
    assert not signatures["train"] & signatures["val"]
    assert not signatures["val"] & signatures["test"]
    # even across seeds
    assert not {s.signature for s in generate_scenes(300, 1, "train")} & signatures["test"]


def test_caption_variety(small):
    captions = list(small.captions)
    per_image = [captions[5 * i : 5 * i + 5] for i in range(small.n_images)]
    assert all(len(set(c)) == 5 for c in per_image)
    assert len(set(captions)) > 0.95 * len(captions)
    assert all(c[0].isupper() and c.endswith(".") and "  " not in c for c in captions)
    # templates differ: first words and lengths vary
    assert len({c.split()[0] for c in captions}) >= 8
    lengths = [len(c.split()) for c in captions]
    assert min(lengths) <= 5 and max(lengths) >= 15
    vocabulary = {w for c in captions for w in re.findall(r"[a-z-]+", c.lower())}
    for synonym_pair in (("big", "large"), ("oval", "ellipse"), ("above", "below")):
        assert vocabulary & set(synonym_pair)
    # some captions leave objects out: not every caption of a multi-object scene names them all
    scenes = small.meta["scenes"]
    partial = 0
    for i, signature in enumerate(scenes):
        kinds = {part.split("/")[0] for part in signature.split("|")[1].split(";")}
        if len(kinds) >= 3:
            partial += sum(1 for c in per_image[i] if sum(k in c.lower() for k in kinds) < len(kinds))
    assert partial > 0
    # many scenes share attributes: the same colour+shape pair shows up in several images
    pairs = [set(re.findall(r"[a-z]+/[a-z]+", s.split("|")[1])) for s in scenes]
    shared = sum(1 for i, p in enumerate(pairs) if any(p & q for j, q in enumerate(pairs) if j != i))
    assert shared > len(scenes) // 3


def test_labels_are_the_shapes_present(small):
    for i, signature in enumerate(small.meta["scenes"]):
        kinds = {part.split("/")[0] for part in signature.split("|")[1].split(";")}
        assert {SHAPES[j] for j in np.flatnonzero(small.labels[i])} == kinds
    assert small.labels.sum(axis=1).min() >= 1


def test_region_features_carry_the_scene():
    """Whole-object regions of the same shape (and colour) are more alike than those of others."""
    scenes = [s for s in generate_scenes(400, 3, "test") if len(s.things) == 1]
    projection = _projection()
    first = np.stack([region_features(s, np.random.default_rng(i), projection)[0] for i, s in enumerate(scenes)])
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    sims = first @ first.T
    same_kind, same_shape, different = [], [], []
    for a in range(len(scenes)):
        for b in range(a + 1, len(scenes)):
            x, y = scenes[a].things[0], scenes[b].things[0]
            if (x.shape, x.colour) == (y.shape, y.colour):
                same_kind.append(sims[a, b])
            elif x.shape == y.shape:
                same_shape.append(sims[a, b])
            else:
                different.append(sims[a, b])
    assert np.mean(same_kind) > np.mean(same_shape) + 0.03 > np.mean(different) + 0.06


def test_rendering_differs_by_shape():
    scene = generate_scenes(1, 0, "test")[0]
    image = np.asarray(render(scene, 64))
    assert image.shape == (64, 64, 3) and len(np.unique(image.reshape(-1, 3), axis=0)) > 2
    rng = np.random.default_rng(0)
    assert len(set(scene_captions(scene, 5, rng))) == 5


def test_cache_folder_reused_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("FICO_HOME", str(tmp_path / "home"))
    first = load_dataset("synthetic", n_images=6, seed=1)
    folder = Path(first.root)
    assert folder.parent == tmp_path / "home" / "synthetic"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["params"]["n_images"] == 6 and "images/000005.png" in manifest["files"]
    stamp = (folder / "images" / "000000.png").stat().st_mtime_ns
    again = synthetic(n_images=6, seed=1)
    assert again.content_hash == first.content_hash
    assert (folder / "images" / "000000.png").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no build leftovers
    # a damaged folder (a file missing) is rebuilt
    (folder / "images" / "000003.png").unlink()
    rebuilt = synthetic(n_images=6, seed=1)
    assert (folder / "images" / "000003.png").is_file() and rebuilt.content_hash == first.content_hash
    # other parameters -> another folder; other splits
    val = synthetic(n_images=6, seed=1, split="val", regions=False)
    assert Path(val.root) != folder and "regions" not in val.features and val.split == "val"


def test_user_root_with_other_parameters_is_refused(tmp_path):
    synthetic(n_images=3, root=tmp_path / "mine", regions=False)
    with pytest.raises(DataFormatError, match="other parameters"):
        synthetic(n_images=4, root=tmp_path / "mine", regions=False)
    with pytest.raises(ValueError, match="split"):
        synthetic(n_images=3, split="dev", root=tmp_path / "x")
    with pytest.raises(ValueError, match="n_images"):
        synthetic(n_images=0, root=tmp_path / "x")
