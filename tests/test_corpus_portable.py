"""Saved corpora are portable: the image root is stored relative to the saved folder (with an absolute
fallback), `image_root=` / `--image-root` relocates it, and old files with absolute roots still load."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
from PIL import Image

from fico_registry.data import Corpus


def _corpus_with_images(root):
    root.mkdir(parents=True)
    for name, colour in (("a.png", "red"), ("b.png", "green")):
        Image.new("RGB", (4, 4), colour).save(root / name)
    return Corpus(
        name="toy",
        split="test",
        image_ids=["a", "b"],
        captions=["red", "green"],
        caption_to_image=np.array([0, 1]),
        image_paths=["a.png", "b.png"],
        root=str(root),
    )


def test_root_outside_the_folder_is_stored_relative_and_moves_with_it(tmp_path):
    data = tmp_path / "data"
    corpus = _corpus_with_images(data / "images")
    corpus.save(data / "corpora" / "toy")
    doc = json.loads((data / "corpora" / "toy" / "corpus.json").read_text())
    assert doc["root"] == "../../images" and doc["root_relative"] is True
    shutil.move(data, tmp_path / "elsewhere")  # the whole tree moves, e.g. to another machine
    moved = Corpus.load(tmp_path / "elsewhere" / "corpora" / "toy")
    assert moved.root == str((tmp_path / "elsewhere" / "images").resolve())
    assert moved.load_image(1).getpixel((0, 0)) == (0, 128, 0)
    assert moved.content_hash == corpus.content_hash


def test_moving_only_the_corpus_folder_falls_back_to_the_absolute_root(tmp_path):
    corpus = _corpus_with_images(tmp_path / "images")
    corpus.save(tmp_path / "saved")
    shutil.move(tmp_path / "saved", tmp_path / "deep" / "down")
    loaded = Corpus.load(tmp_path / "deep" / "down")
    assert loaded.root == str((tmp_path / "images").resolve())
    assert loaded.load_image(0).getpixel((0, 0)) == (255, 0, 0)


def test_image_root_relocates(tmp_path):
    corpus = _corpus_with_images(tmp_path / "images")
    corpus.save(tmp_path / "saved")
    shutil.move(tmp_path / "images", tmp_path / "new-images")
    loaded = Corpus.load(tmp_path / "saved", image_root=tmp_path / "new-images")
    assert loaded.root == str((tmp_path / "new-images").resolve())
    assert loaded.load_image(0).getpixel((0, 0)) == (255, 0, 0)
    assert loaded.content_hash == corpus.content_hash


def test_old_saved_corpora_with_absolute_roots_still_load(tmp_path):
    corpus = _corpus_with_images(tmp_path / "images")
    folder = corpus.save(tmp_path / "saved")
    doc = json.loads((folder / "corpus.json").read_text())
    doc["root"], doc["root_relative"] = str((tmp_path / "images").resolve()), False  # what version 0.1 wrote
    del doc["root_absolute"]
    (folder / "corpus.json").write_text(json.dumps(doc))
    loaded = Corpus.load(folder)
    assert loaded.root == str((tmp_path / "images").resolve())
    assert loaded.load_image(1).getpixel((0, 0)) == (0, 128, 0)
    relocated = Corpus.load(folder, image_root=tmp_path / "images")
    assert relocated.root == loaded.root


def test_no_root_stays_none(tmp_path):
    corpus = replace(_corpus_with_images(tmp_path / "images"), root=None, meta={})
    corpus.save(tmp_path / "saved")
    assert Corpus.load(tmp_path / "saved").root is None


def test_evaluate_cli_relocates_a_saved_corpus(tmp_path):
    from click.testing import CliRunner

    from fico_registry.cli import cli
    from fico_registry.data.synthetic import synthetic

    corpus = synthetic(n_images=6, captions_per_image=2, root=tmp_path / "built", regions=False, image_size=32)
    corpus.save(tmp_path / "saved")
    saved_root = Corpus.load(tmp_path / "saved").root
    shutil.move(saved_root, tmp_path / "moved-images")
    args = [
        "evaluate",
        "reference-dual",
        "--config",
        "tiny",
        "--corpus",
        str(tmp_path / "saved"),
        "--no-cache",
        "--json",
    ]
    lost = CliRunner().invoke(cli, args)
    assert lost.exit_code != 0 and "check the image root" in lost.output
    found = CliRunner().invoke(cli, [*args, "--image-root", str(tmp_path / "moved-images")])
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["corpus"]["content_hash"] == corpus.content_hash
    both = CliRunner().invoke(
        cli, ["evaluate", "reference-dual", "--image-root", str(tmp_path), "--dataset", "synthetic"]
    )
    assert both.exit_code != 0 and "with --dataset pass --root" in both.output
