"""`fico evaluate --save-embeddings DIR` and `fico submit --from-embeddings DIR` / `--model`: a plugin
author submits without a script, and the board accepts the result."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fico_registry.cli import cli
from fico_registry.data.synthetic import synthetic
from fico_registry.errors import DataFormatError, OptionError
from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention
from fico_registry.results.embedding_export import check_exportable, read_saved_embeddings


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("save-emb")
    corpus = synthetic(n_images=10, captions_per_image=2, root=root / "built", image_size=32)
    return corpus.save(root / "corpus")


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def refusal(*args) -> str:
    """The output of a `fico` command line that must fail."""
    run = invoke(*args)
    assert run.exit_code != 0, run.output
    return run.output


def test_saved_embeddings_are_the_encoder_outputs_in_corpus_order(corpus_dir, tmp_path):
    from fico_registry import load_model
    from fico_registry.data import Corpus

    out = tmp_path / "emb"
    run = invoke(
        "evaluate",
        "reference-dual",
        "--config",
        "tiny",
        "--corpus",
        corpus_dir,
        "--batch-size",
        3,
        "--save-embeddings",
        out,
        "--no-cache",
        "--json",
    )
    assert run.exit_code == 0, run.output
    assert f"submit them: fico submit --from-embeddings {out}" in run.stderr
    saved = read_saved_embeddings(out)
    manifest = saved.manifest
    corpus = Corpus.load(corpus_dir)
    assert (manifest["model"], manifest["output"], manifest["measure"]) == ("reference-dual", "continuous", "cosine")
    assert manifest["config_name"] == "tiny" and manifest["corpus"]["content_hash"] == corpus.content_hash
    assert manifest["batch_size"] == 3 and manifest["checkpoint_sha256"] is None
    images, texts = np.load(out / "images.npy"), np.load(out / "texts.npy")
    assert manifest["files"]["images"] == {"file": "images.npy", "dtype": "float32", "shape": list(images.shape)}
    # oracle: the model itself, one item at a time, in corpus order
    model = load_model("reference-dual", config="tiny", device="cpu")
    with torch.inference_mode():
        want_img = torch.cat([model.encode_images([corpus.load_image(i)]) for i in range(corpus.n_images)]).numpy()
        want_txt = torch.cat([model.encode_texts([c]) for c in corpus.captions]).numpy()
    np.testing.assert_allclose(images, want_img, atol=1e-5)
    np.testing.assert_allclose(texts, want_txt, atol=1e-5)
    assert np.array_equal(np.load(out / "caption_to_image.npy"), corpus.caption_to_image)
    assert np.array_equal(np.load(out / "labels.npy"), corpus.labels)
    assert json.loads((out / "report.json").read_text())["model"]["name"] == "reference-dual"


def test_submit_from_embeddings_is_accepted_by_the_board(corpus_dir, tmp_path):
    out = tmp_path / "emb"
    run = invoke("evaluate", "reference-hash", "--config", "tiny", "--corpus", corpus_dir, "--save-embeddings", out)
    assert run.exit_code == 0
    codes = np.load(out / "images.npy")
    assert codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1} and codes.shape[1] == 16
    assert read_saved_embeddings(out).manifest["measure"] == "hamming"
    run = invoke("submit", "--corpus", corpus_dir, "--from-embeddings", out, "-o", tmp_path / "sub")
    assert run.exit_code == 0, run.output
    submission = json.loads((tmp_path / "sub" / "submission.json").read_text())
    assert submission["model"]["name"] == "reference-hash" and submission["model"]["output"] == "binary"
    assert submission["model"]["config_name"] == "tiny"  # provenance carried over from report.json
    report = json.loads((out / "report.json").read_text())
    for direction in ("i2t", "t2i"):
        claimed = submission["metrics"]["instance"][direction]["R@1"]
        assert claimed == pytest.approx(report["instance"][direction]["R@1"])
    check = invoke("leaderboard", "check", tmp_path / "sub", "--corpus", corpus_dir)
    assert check.exit_code == 0 and "accepted" in check.output


def test_submit_with_model_encodes_now(corpus_dir, tmp_path):
    run = invoke(
        "submit",
        "--corpus",
        corpus_dir,
        "--model",
        "reference-dual",
        "--config",
        "tiny",
        "--model-name",
        "my ref",
        "-o",
        tmp_path / "sub",
    )
    assert run.exit_code == 0, run.output
    submission = json.loads((tmp_path / "sub" / "submission.json").read_text())
    assert submission["model"]["name"] == "my ref" and submission["model"]["config_name"] == "tiny"
    assert invoke("leaderboard", "check", tmp_path / "sub", "--corpus", corpus_dir).exit_code == 0


def test_submit_with_model_refuses_measure_before_encoding(corpus_dir, tmp_path, monkeypatch):
    import fico_registry.cli.leaderboard as submit_cli

    def must_not_encode(*_args, **_kwargs):
        raise AssertionError("the corpus was encoded before --measure was refused")

    monkeypatch.setattr(submit_cli, "_encode_now", must_not_encode)
    output = refusal(
        "submit", "--corpus", corpus_dir, "--model", "reference-dual", "--measure", "cosine", "-o", tmp_path
    )
    assert "come from the saved model card" in output


def test_cross_attention_models_save_their_score_matrix(corpus_dir, tmp_path):
    out = tmp_path / "emb"
    run = invoke("evaluate", "scan", "--config", "tiny", "--corpus", corpus_dir, "--save-embeddings", out, "--no-cache")
    assert run.exit_code == 0, run.output
    saved = read_saved_embeddings(out)
    assert saved.manifest["output"] == "similarity" and set(saved.manifest["files"]) >= {"i2t", "caption_to_image"}
    assert np.load(out / "i2t.npy").shape == (10, 20)
    assert "images" not in saved.manifest["files"]
    run = invoke("submit", "--corpus", corpus_dir, "--from-embeddings", out, "-o", tmp_path / "sub")
    assert run.exit_code == 0, run.output
    assert invoke("leaderboard", "check", tmp_path / "sub", "--corpus", corpus_dir).exit_code == 0


def test_fusion_rerank_models_are_refused_before_any_work():
    spec = types.SimpleNamespace(
        name="blip-ish", output=OutputKind.SIMILARITY, query_time_attention=QueryTimeAttention.FUSION_RERANK
    )
    with pytest.raises(OptionError, match="fusion re-rank"):
        check_exportable(spec)


def test_mistakes_are_refused_with_what_to_do(corpus_dir, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    evaluate = ("evaluate", "reference-dual", "--config", "tiny", "--corpus", corpus_dir)
    assert "not an empty folder" in refusal(*evaluate, "--save-embeddings", full)
    with pytest.raises(DataFormatError, match="--save-embeddings"):
        read_saved_embeddings(tmp_path)
    out = tmp_path / "emb"
    assert invoke(*evaluate, "--save-embeddings", out).exit_code == 0
    other = synthetic(n_images=4, captions_per_image=2, root=tmp_path / "other-built", image_size=32).save(
        tmp_path / "other"
    )
    saved = ("--corpus", corpus_dir, "--from-embeddings", out)
    images, texts = ("--images", out / "images.npy"), ("--texts", out / "texts.npy")
    assert "holds outputs for corpus" in refusal(
        "submit", "--corpus", other, "--from-embeddings", out, "-o", tmp_path / "s1"
    )
    assert "give the evidence one way" in refusal("submit", *saved, *images, "-o", tmp_path / "s2")
    assert "come from the saved model card" in refusal(
        "submit", *saved, "--measure", "euclidean", "-o", tmp_path / "s3"
    )
    assert "--model-name" in refusal("submit", "--corpus", corpus_dir, *images, *texts, "-o", tmp_path / "s4")
    (out / "texts.npy").unlink()
    with pytest.raises(DataFormatError, match=r"texts\.npy"):
        read_saved_embeddings(out)
