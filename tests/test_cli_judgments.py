"""`fico ... --judgments`: qrels files for evaluate-embeddings / -similarity, named sets for evaluate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fico_registry import evaluate_embeddings
from fico_registry.cli.judged_options import parse_specs
from fico_registry.cli.main import cli
from fico_registry.data.judgments import Judgments, JudgmentSet
from fico_registry.errors import OptionError


def invoke(*args: str, cwd: Path):
    import os

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)
    finally:
        os.chdir(here)


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((6, 4)).astype(np.float32)
    c2i = np.repeat(np.arange(6), 2)
    txt = img[c2i] + rng.standard_normal((12, 4)).astype(np.float32)
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "txt.npy", txt)
    (tmp_path / "image_ids.txt").write_text("\n".join(f"im{i}" for i in range(6)))
    (tmp_path / "caption_ids.txt").write_text("\n".join(f"cap{j}" for j in range(12)))
    (tmp_path / "i2t.qrels").write_text("im0 0 cap0 2\nim0 0 cap5 1\nim3 0 cap7 3\n")
    (tmp_path / "t2i.qrels").write_text("cap1 0 im0 1\ncap9 0 im2 1\n")
    return tmp_path, img, txt, c2i


def test_qrels_files_give_the_same_numbers_as_the_api(files):
    root, img, txt, c2i = files
    out = invoke(
        "evaluate-embeddings", "--images", "img.npy", "--texts", "txt.npy", "--captions-per-image", "2",
        "--image-ids", "image_ids.txt", "--caption-ids", "caption_ids.txt",
        "--judgments", "ext:i2t=i2t.qrels,ext:t2i=t2i.qrels", "--judgments", "auto=t2i.qrels",
        "--ndcg-ks", "3,10", "--json", cwd=root,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)["judged"]
    i2t = Judgments.from_pairs([0, 0, 3], [0, 5, 7], 6, 12, [2, 1, 3])
    t2i = Judgments.from_pairs([1, 9], [0, 2], 12, 6)
    want = evaluate_embeddings(img, txt, c2i, device="cpu", judgments=JudgmentSet("ext", i2t, t2i), ndcg_ks=(3, 10))
    for direction in ("i2t", "t2i"):
        assert got["ext"][direction] == pytest.approx(want.judged["ext"][direction])
    assert got["auto"]["i2t"] is None and got["auto"]["t2i"] == pytest.approx(got["ext"]["t2i"])  # read as t2i


def test_similarity_with_positions_as_ids(files):
    root, img, txt, _ = files
    np.save(root / "s.npy", img @ txt.T)
    (root / "pos.qrels").write_text("0 0 1 1\n")  # ids 0..5 are images and captions: the direction is ambiguous
    out = invoke(
        "evaluate-similarity",
        "--i2t",
        "s.npy",
        "--captions-per-image",
        "2",
        "--judgments",
        "p:i2t=pos.qrels",
        "--json",
        cwd=root,
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["judged"]["p"]["i2t"]["judged_queries"] == 1
    out = invoke(
        "evaluate-similarity", "--i2t", "s.npy", "--captions-per-image", "2", "--judgments", "p=pos.qrels", cwd=root
    )
    assert out.exit_code == 2 and re.search(r"say p:i2t=.* or p:t2i=", out.output), out.output


def test_bad_judgment_options_are_typed_errors(files):
    root = files[0]
    with pytest.raises(OptionError, match="direction must be i2t or t2i"):
        parse_specs(["x:up=i2t.qrels"])
    with pytest.raises(OptionError, match="no file"):
        parse_specs(["x:i2t=missing.qrels"])
    with pytest.raises(OptionError, match="given twice"):
        parse_specs([f"x:i2t={root / 'i2t.qrels'}", f"x={root / 't2i.qrels'}"])
    args = ("evaluate-embeddings", "--images", "img.npy", "--texts", "txt.npy", "--captions-per-image", "2")
    ids = ("--image-ids", "image_ids.txt", "--caption-ids", "caption_ids.txt")
    (root / "short.txt").write_text("a\nb\n")
    cases = {
        ("--judgments", "eccv"): "named sets need a corpus",
        ("--judgments", "x:i2t=i2t.qrels", "--ndcg-ks", "a", *ids): "--ndcg-ks",
        ("--judgments", "x:i2t=i2t.qrels", "--ndcg-ks", "0", *ids): "ndcg_ks must be positive",
        ("--judgments", "x:i2t=i2t.qrels", "--image-ids", "short.txt"): "2 ids for 6 images",
        ("--judgments", "x:i2t=i2t.qrels"): "query id 'im0' is not in the corpus",  # positions are the default ids
    }
    for extra, words in cases.items():
        out = invoke(*args, *extra, cwd=root)
        assert out.exit_code == 2 and words in out.output, (extra, out.output)


def test_evaluate_synthetic_with_shared_objects(tmp_path):
    out = invoke(
        "evaluate", "reference-dual", "--config", "tiny", "--dataset-option", "n_images=12",
        "--root", str(tmp_path / "c"),
        "--no-cache", "--judgments", "shared-objects", "--gain", "exponential", "-o", "r.json", cwd=tmp_path,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "judged relevance" in out.output
    report = json.loads((tmp_path / "r.json").read_text())
    shared = report["judged"]["shared-objects"]
    assert shared["i2t"]["gain"] == "exponential" and shared["t2i"]["judged_queries"] == 60
    assert shared["provenance"]["i2t"]["graded"] is True


def test_corpus_save_keeps_the_judgments(tmp_path):
    from fico_registry.data import Corpus

    out = invoke(
        "corpus", "save", "synthetic", "--root", str(tmp_path / "src"), "--dataset-option", "n_images=10",
        "--judgments", "shared-objects", "-o", str(tmp_path / "saved"), cwd=tmp_path,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert set(Corpus.load(tmp_path / "saved").judgments) == {"shared-objects"}
