"""Submissions and the verified leaderboard: valid, forged, malicious and malformed submissions.

Every submission is built on a small synthetic corpus with random embeddings. The board must
accept only the valid ones, with metrics it recomputed itself, and reject the rest with a reason
that says why, without ever unpickling or executing anything a submitter sent.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fico_registry.cli.leaderboard import parse_size
from fico_registry.cli.main import cli
from fico_registry.errors import OptionError
from fico_registry.evaluator.evaluate import DEFAULT_MAP_KS, DEFAULT_RECALL_KS, evaluate_embeddings, evaluate_similarity
from fico_registry.leaderboard import build_leaderboard, make_submission, standard, verify_submission
from fico_registry.leaderboard import evidence as ev
from fico_registry.leaderboard.site import safe_url
from fico_registry.results.record import read_result

MALICIOUS_NAME = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2;alert("pwned")</script> & Co'
MALICIOUS_DESCRIPTION = '<a href="javascript:alert(1)">click</a> "quoted" \'single\' </td></tr></table>'
MAX_FILE_BYTES = 64 << 10


class _Payload:
    """A pickle that, if ever loaded, creates a folder: the build must never load it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)


def edit_json(folder: Path, change) -> None:
    path = folder / "submission.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def replace_evidence(folder: Path, role: str, content: bytes | np.ndarray, *, update_claim: bool = True) -> None:
    """Overwrite an evidence file (raw bytes or an array) and, like a careful forger, fix up submission.json."""
    doc = json.loads((folder / "submission.json").read_text())
    target = folder / doc["evidence"][role]["file"]
    if isinstance(content, np.ndarray):
        np.save(target, content, allow_pickle=False)
    else:
        target.write_bytes(content)
    if update_claim:

        def change(d):
            entry = d["evidence"][role]
            entry["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
            entry["bytes"] = target.stat().st_size
            if isinstance(content, np.ndarray):
                entry["shape"], entry["dtype"] = list(content.shape), str(content.dtype)

        edit_json(folder, change)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    from fico_registry.data import synthetic

    root = tmp_path_factory.mktemp("lb-corpus")
    synthetic(n_images=20, seed=11, root=root, split="test")
    return root


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    from fico_registry.data import Corpus

    return Corpus.load(corpus_dir)


def embeddings(corpus, seed: int, dim: int = 16, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((corpus.n_images, dim)).astype(np.float32)
    txt = (img[corpus.caption_to_image] + noise * rng.standard_normal((corpus.n_captions, dim))).astype(np.float32)
    return img, txt


@pytest.fixture(scope="module")
def board(corpus, corpus_dir, tmp_path_factory):
    """All the submissions of the test, one build, and what the build returned."""
    root = tmp_path_factory.mktemp("lb")
    subs = root / "submissions"
    subs.mkdir()
    arrays: dict[str, tuple[np.ndarray, ...]] = {}

    def fresh(name: str, seed: int, **kwargs) -> Path:
        img, txt = embeddings(corpus, seed)
        arrays[name] = (img, txt)
        make_submission(
            corpus,
            kwargs.pop("model_name", f"model {name}"),
            subs / name,
            images=img,
            texts=txt,
            device="cpu",
            **kwargs,
        )
        return subs / name

    # -- valid -----------------------------------------------------------------------------------
    fresh(
        "valid-embeddings",
        1,
        model={"family": "fg", "url": "https://example.org/model?a=1&b=2", "description": "a plain model"},
        submitter="alice",
    )
    img, txt = embeddings(corpus, 2)
    codes_img = np.where(np.concatenate([img, img[:, ::-1]], 1) >= 0, 1, -1).astype(np.int8)
    codes_txt = np.where(np.concatenate([txt, txt[:, ::-1]], 1) >= 0, 1, -1).astype(np.int8)
    arrays["valid-hamming"] = (codes_img, codes_txt)
    np.save(root / "codes_img.npy", codes_img)
    np.save(root / "codes_txt.npy", codes_txt)
    out = invoke(
        "submit",
        "--corpus",
        str(corpus_dir),
        "--model-name",
        "hash model",
        "--images",
        str(root / "codes_img.npy"),
        "--texts",
        str(root / "codes_txt.npy"),
        "--measure",
        "hamming",
        "--family",
        "cg",
        "--submitter",
        "bob",
        "--device",
        "cpu",
        "-o",
        str(subs / "valid-hamming"),
    )
    assert out.exit_code == 0, out.output
    img, txt = embeddings(corpus, 3)
    i2t = img @ txt.T
    t2i = i2t.T + 0.01 * np.random.default_rng(3).standard_normal(i2t.T.shape).astype(np.float32)
    arrays["valid-similarity"] = (i2t, t2i)
    make_submission(
        corpus,
        "scores model",
        subs / "valid-similarity",
        i2t=i2t,
        t2i=t2i,
        model={"family": "vlp"},
        evidence_format="safetensors",
        device="cpu",
    )
    fresh(
        "malicious-name",
        4,
        model_name=MALICIOUS_NAME,
        model={"description": MALICIOUS_DESCRIPTION, "url": 'https://example.org/"onmouseover=alert(1)'},
        submitter="<b>mallory</b>",
    )

    # -- forged ----------------------------------------------------------------------------------
    def raise_r1(d):
        d["metrics"]["instance"]["i2t"]["R@1"] = min(1.0, d["metrics"]["instance"]["i2t"]["R@1"] + 0.2)

    edit_json(fresh("forged-metrics", 5), raise_r1)
    better, _ = embeddings(corpus, 99)
    replace_evidence(fresh("forged-evidence", 6), "images", better)  # claims kept, evidence swapped
    tampered = fresh("tampered-evidence", 7)
    replace_evidence(tampered, "images", embeddings(corpus, 77)[0], update_claim=False)
    fresh("non-standard-settings", 8)
    edit_json(subs / "non-standard-settings", lambda d: d["settings"].__setitem__("ties", "optimistic"))

    # -- malicious -------------------------------------------------------------------------------
    fresh("javascript-url", 9)
    edit_json(subs / "javascript-url", lambda d: d["model"].__setitem__("url", "javascript:alert(document.cookie)"))
    marker = root / "PICKLE-WAS-LOADED"
    replace_evidence(fresh("pickle-as-npy", 10), "images", pickle.dumps(_Payload(marker), protocol=4))
    obj_path = root / "object.npy"
    np.save(obj_path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    replace_evidence(fresh("object-array-npy", 11), "images", obj_path.read_bytes())
    import torch

    torch.save({"images": torch.zeros(3)}, root / "weights.pt")
    replace_evidence(fresh("torch-zip-as-npy", 12), "images", (root / "weights.pt").read_bytes())
    fresh("path-traversal", 13)
    edit_json(
        subs / "path-traversal", lambda d: d["evidence"]["images"].__setitem__("file", "../valid-embeddings/images.npy")
    )
    fresh("symlinked-evidence", 14)
    (subs / "symlinked-evidence" / "images.npy").unlink()
    (subs / "symlinked-evidence" / "images.npy").symlink_to(subs / "valid-embeddings" / "images.npy")
    fresh("with-executable", 15)
    (subs / "with-executable" / "run.sh").write_text("#!/bin/sh\ntouch /tmp/owned\n")
    fresh("with-subfolder", 16)
    (subs / "with-subfolder" / "extra").mkdir()
    (subs / "symlinked-folder").symlink_to(subs / "valid-embeddings", target_is_directory=True)

    # -- malformed -------------------------------------------------------------------------------
    fresh("unknown-corpus", 17)
    edit_json(subs / "unknown-corpus", lambda d: d["corpus"].__setitem__("content_hash", "ab" * 32))
    fresh("shape-mismatch", 18)
    replace_evidence(subs / "shape-mismatch", "images", embeddings(corpus, 18)[0][:19])
    rng = np.random.default_rng(19)
    make_submission(
        corpus,
        "too big",
        subs / "oversized",
        images=rng.standard_normal((20, 1000)).astype(np.float32),
        texts=rng.standard_normal((100, 1000)).astype(np.float32),
        device="cpu",
    )
    shutil.copytree(subs / "valid-embeddings", subs / "zz-duplicate")
    fresh("nan-json", 20)
    text = (subs / "nan-json" / "submission.json").read_text()
    (subs / "nan-json" / "submission.json").write_text(re.sub(r'"MeanR": [0-9.]+', '"MeanR": NaN', text, count=1))
    fresh("not-json", 21)
    (subs / "not-json" / "submission.json").write_text("{this is not json")
    (subs / "no-submission-json").mkdir()
    np.save(subs / "no-submission-json" / "images.npy", np.zeros((20, 4), np.float32))
    fresh("percent-metrics", 22)
    edit_json(subs / "percent-metrics", lambda d: d["metrics"]["instance"]["t2i"].__setitem__("R@1", 55.0))
    fresh("extra-field", 23)
    edit_json(subs / "extra-field", lambda d: d.__setitem__("run_this", "import os"))
    (subs / "README.md").write_text("submissions go in folders\n")  # top-level files are ignored

    site = root / "site"
    with pytest.MonkeyPatch.context() as mp:

        def refuse(*args, **kwargs):
            raise AssertionError("the leaderboard build tried to unpickle something")

        mp.setattr(pickle, "load", refuse)
        mp.setattr(pickle, "loads", refuse)
        mp.setattr(pickle, "Unpickler", refuse)
        result = build_leaderboard(subs, [corpus], site, max_file_bytes=MAX_FILE_BYTES)
    return {"result": result, "site": site, "subs": subs, "arrays": arrays, "marker": marker, "corpus": corpus}


ACCEPTED = {"valid-embeddings", "valid-hamming", "valid-similarity", "malicious-name"}
REJECTED = {
    "forged-metrics": "claimed metrics differ from the recomputed ones beyond tolerance 0.001: i2t R@1: claimed",
    "forged-evidence": "claimed metrics differ from the recomputed ones",
    "tampered-evidence": "images.npy: sha256 does not match submission.json",
    "non-standard-settings": "non-standard settings: ties 'optimistic'",
    "javascript-url": "schema: submission.json: model.url: must be an absolute http:// or https:// URL",
    "pickle-as-npy": "images.npy is pickle data, not npy: pickles can run code and are never loaded",
    "object-array-npy": "images.npy holds Python objects",
    "torch-zip-as-npy": "images.npy is a zip archive",
    "path-traversal": "is not a plain file name",
    "symlinked-evidence": "images.npy is a symbolic link",
    "with-executable": "unexpected file run.sh (a script)",
    "with-subfolder": "extra/ is a sub-folder",
    "symlinked-folder": "the submission folder is a symbolic link",
    "unknown-corpus": "unknown corpus synthetic/test (content hash abababababab)",
    "shape-mismatch": "images evidence has 19 rows but the corpus has 20 images",
    "oversized": f"texts.npy is 400128 bytes, over the limit of {MAX_FILE_BYTES} per file",
    "zz-duplicate": "duplicate entry: the same evidence files as submission valid-embeddings",
    "nan-json": "NaN is not valid JSON",
    "not-json": "not valid strict JSON",
    "no-submission-json": "no submission.json",
    "percent-metrics": "t2i R@1 is a fraction and must lie in [0, 1], got 55.0",
    "extra-field": "run_this: Extra inputs are not permitted",
}


def test_build_accepts_only_the_valid_submissions(board) -> None:
    result = board["result"]
    assert {v.submission for v in result.accepted} == ACCEPTED
    assert {v.submission for v in result.rejected} == set(REJECTED)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_each_rejection_says_why(board, name) -> None:
    (verdict,) = [v for v in board["result"].rejected if v.submission == name]
    assert any(REJECTED[name] in reason for reason in verdict.reasons), verdict.reasons


def test_nothing_was_unpickled_or_executed(board) -> None:
    assert not board["marker"].exists()  # the pickle's payload would have created it


def test_accepted_metrics_are_the_recomputed_ones(board, corpus) -> None:
    arrays = board["arrays"]
    by_name = {v.submission: v for v in board["result"].accepted}
    expected = {
        "valid-embeddings": evaluate_embeddings(
            *arrays["valid-embeddings"], corpus.caption_to_image, corpus.labels, device="cpu"
        ),
        "valid-hamming": evaluate_embeddings(
            *arrays["valid-hamming"], corpus.caption_to_image, corpus.labels, measure="hamming", device="cpu"
        ),
        "valid-similarity": evaluate_similarity(
            arrays["valid-similarity"][0],
            corpus.caption_to_image,
            t2i=arrays["valid-similarity"][1],
            labels=corpus.labels,
            device="cpu",
        ),
    }
    for name, report in expected.items():
        data = report.to_dict()
        got = by_name[name].result
        assert got.metrics.instance == data["instance"]
        assert got.metrics.category == data["category"]
    assert by_name["valid-hamming"].result.model.output == "binary"
    assert by_name["valid-hamming"].storage == {"images": 4.0, "texts": 4.0}  # 32-bit codes = 4 bytes
    assert by_name["valid-embeddings"].storage == {"images": 64.0, "texts": 64.0}  # 16 float32
    assert by_name["valid-similarity"].storage == {"images": None, "texts": None}


def test_forged_numbers_never_reach_the_site(board) -> None:
    page = next(board["site"].glob("synthetic-test-*.html")).read_text()
    assert "model forged-metrics" in page  # listed among the rejected...
    rows = page.split('<table id="board"', 1)[1].split("</table>", 1)[0]
    assert "forged" not in rows and "tampered" not in rows  # ...but not on the board
    assert rows.count("<tr data-family=") == len(ACCEPTED)


def test_rejected_json(board) -> None:
    doc = json.loads((board["site"] / "rejected.json").read_text())
    assert {item["submission"] for item in doc} == set(REJECTED)
    by_name = {item["submission"]: item for item in doc}
    assert by_name["forged-metrics"]["model"] == "model forged-metrics"
    assert str(board["subs"]) not in json.dumps(doc)  # no local paths published


def test_results_json_holds_recomputed_entries(board) -> None:
    (path,) = (board["site"] / "results").glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["corpus"]["content_hash"] == board["corpus"].content_hash
    assert {e["submission"] for e in doc["entries"]} == ACCEPTED
    assert "NaN" not in path.read_text()


def test_untrusted_text_is_escaped(board) -> None:
    page = next(board["site"].glob("synthetic-test-*.html")).read_text()
    index = (board["site"] / "index.html").read_text()
    for text in (page, index):
        assert "<img src=x" not in text and "onerror=" not in text.replace("onerror=&#34;", "")
        assert "<b>mallory</b>" not in text
        assert "javascript:" not in text.split("<body>", 1)[1].replace("javascript:alert(1)&#34;&gt;click", "")
    escaped = html.escape(MALICIOUS_NAME, quote=True).replace("&quot;", "&#34;").replace("&#x27;", "&#39;")
    assert escaped in page  # shown as text, in the model cell
    assert page.count("<script") == 1  # ours, and only ours
    # the link with a quote in it stays inside its attribute
    assert 'href="https://example.org/&#34;onmouseover=alert(1)"' in page


def test_pages_allow_only_their_own_inline_code(board) -> None:
    page = next(board["site"].glob("synthetic-test-*.html")).read_text()
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1))
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    for code in (script, style):
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "http://" not in page.split("<body>", 1)[0] and "<link" not in page  # no CDN, no external assets


def test_site_layout_and_plots(board) -> None:
    site = board["site"]
    assert (site / "index.html").exists() and (site / ".fico-leaderboard").exists()
    plots = sorted(p.name for p in (site / "plots").iterdir())
    assert len(plots) == 2 and all(p.endswith(".svg") for p in plots)
    page = next(site.glob("synthetic-test-*.html")).read_text()
    assert page.count('src="data:image/svg+xml;base64,') == 2
    for svg in (site / "plots").iterdir():
        assert b"<script" not in svg.read_bytes()
    for header in ("R@1", "R@5", "R@10", "RSUM", "mAP@10", "mAP@N", "B/image", "ms/image", "query s"):
        assert f">{header}</button>" in page
    assert 'name="family" value="vlp"' in page and 'name="output" value="binary"' in page


def test_rebuild_replaces_the_site_but_never_a_foreign_folder(board, corpus, tmp_path) -> None:
    subs = tmp_path / "subs"
    shutil.copytree(board["subs"] / "valid-embeddings", subs / "one")
    result = build_leaderboard(subs, [corpus], board["site"].parent / "site2", plots=False)
    assert [v.submission for v in result.accepted] == ["one"]
    assert not (board["site"].parent / "site2" / "plots").exists()
    again = build_leaderboard(subs, [corpus], board["site"].parent / "site2", plots=False)  # a previous build: replaced
    assert again.pages
    foreign = tmp_path / "my-documents"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(OptionError, match="not empty"):
        build_leaderboard(subs, [corpus], foreign)
    assert (foreign / "thesis.txt").read_text() == "precious"
    with pytest.raises(OptionError, match="outside the submissions folder"):
        build_leaderboard(subs, [corpus], subs / "site")


def test_resubmission_replaces_the_older_entry(corpus, tmp_path) -> None:
    subs = tmp_path / "subs"
    for name, seed, date in (("v1", 30, "2024-01-01T00:00:00Z"), ("v2", 31, "2024-06-01T00:00:00Z")):
        img, txt = embeddings(corpus, seed)
        make_submission(corpus, "Same  Model", subs / name, images=img, texts=txt, device="cpu")
        edit_json(subs / name, lambda d, date=date: d.__setitem__("date", date))
    result = build_leaderboard(subs, [corpus], tmp_path / "site", plots=False)
    assert [v.submission for v in result.accepted] == ["v2"]
    (old,) = result.rejected
    assert "superseded by the newer submission v2" in old.reasons[0]


def test_verify_one_submission_and_tolerance(board, corpus) -> None:
    corpora = {corpus.content_hash: corpus}
    assert verify_submission(board["subs"] / "valid-embeddings", corpora).accepted
    forged = verify_submission(board["subs"] / "forged-metrics", corpora, tolerance=0.5)
    assert forged.accepted  # +0.2 on R@1 is inside a (silly) tolerance of 0.5
    # the board shows its own numbers
    assert forged.result.metrics.instance["i2t"]["R@1"] != forged.claimed.metrics.instance["i2t"]["R@1"]


def submit_cli(corpus_dir: Path, out_dir: Path, *options: str):
    """`fico submit --corpus CORPUS_DIR --model-name x OPTIONS -o OUT_DIR`, its errors caught (tests assert them)."""
    args = ["submit", "--corpus", str(corpus_dir), "--model-name", "x", *options, "-o", str(out_dir)]
    return CliRunner().invoke(cli, args, obj={})


def test_submit_cli_errors_are_one_line(corpus_dir, tmp_path) -> None:
    def submit_embeddings(*options: str):
        files = ("--images", str(tmp_path / "img.npy"), "--texts", str(tmp_path / "txt.npy"))
        return submit_cli(corpus_dir, tmp_path / "s", *files, *options)

    out = submit_cli(corpus_dir, tmp_path / "s")
    assert out.exit_code == 2 and "give embeddings" in out.output
    np.save(tmp_path / "img.npy", np.zeros((19, 4), np.float32))
    np.save(tmp_path / "txt.npy", np.zeros((100, 4), np.float32))
    out = submit_embeddings()
    assert out.exit_code == 2 and "19 rows but the corpus has 20 images" in out.output
    np.save(tmp_path / "img.npy", np.zeros((20, 4), np.float32))
    np.save(tmp_path / "txt.npy", np.ones((100, 4), np.float32))
    out = submit_embeddings("--measure", "euclidean", "--url", "javascript:x")
    assert out.exit_code == 2 and "model.url: must be an absolute http" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "s").exists()


def test_submit_refuses_pickled_inputs(corpus_dir, tmp_path) -> None:
    import torch

    np.save(tmp_path / "obj.npy", np.array([object()] * 20, dtype=object), allow_pickle=True)
    np.save(tmp_path / "txt.npy", np.zeros((100, 4), np.float32))
    torch.save(torch.zeros(20, 4), tmp_path / "img.pt")
    texts = ("--texts", str(tmp_path / "txt.npy"))
    out = submit_cli(corpus_dir, tmp_path / "s", *texts, "--images", str(tmp_path / "obj.npy"))
    assert out.exit_code == 2 and "Python objects" in out.output
    out = submit_cli(corpus_dir, tmp_path / "s", *texts, "--images", str(tmp_path / "img.pt"))
    assert out.exit_code == 2 and "never unpickle" in out.output
    assert not (tmp_path / "s").exists()


def test_submit_reads_npz_and_safetensors_inputs(corpus, corpus_dir, tmp_path) -> None:
    from safetensors.numpy import save_file

    img, txt = embeddings(corpus, 43)
    np.savez(tmp_path / "both.npz", images=img, texts=txt)
    save_file({"texts": txt}, str(tmp_path / "texts.safetensors"))
    out = invoke(
        "submit",
        "--corpus",
        str(corpus_dir),
        "--model-name",
        "x",
        "--images",
        f"{tmp_path}/both.npz:images",
        "--texts",
        str(tmp_path / "texts.safetensors"),
        "--evidence-format",
        "safetensors",
        "--device",
        "cpu",
        "-o",
        str(tmp_path / "s"),
    )
    assert out.exit_code == 0, out.output
    written = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert written == ["images.safetensors", "submission.json", "texts.safetensors"]
    assert verify_submission(tmp_path / "s", {corpus.content_hash: corpus}).accepted


def test_leaderboard_cli_build_and_check(board, corpus_dir, tmp_path) -> None:
    subs = tmp_path / "subs"
    shutil.copytree(board["subs"] / "valid-similarity", subs / "good")
    shutil.copytree(board["subs"] / "forged-metrics", subs / "bad")
    build = ["leaderboard", "build", str(subs), "--corpus", str(corpus_dir), "-o", str(tmp_path / "site")]
    out = invoke(*build, "--json", "--no-plots")
    assert out.exit_code == 0
    summary = json.loads(out.output)
    assert summary["accepted"] == ["good"] and summary["rejected"][0]["submission"] == "bad"
    out = CliRunner().invoke(cli, [*build, "--strict", "--no-plots"], obj={})
    assert out.exit_code == 1 and "rejected bad" in out.output
    out = invoke("leaderboard", "check", str(subs / "good"), "--corpus", str(corpus_dir))
    assert out.exit_code == 0 and "accepted" in out.output
    out = CliRunner().invoke(cli, ["leaderboard", "check", str(subs / "bad"), "--corpus", str(corpus_dir)], obj={})
    assert out.exit_code == 1 and "claimed metrics differ" in out.output


def test_submit_carries_a_model_report_over(corpus, tmp_path) -> None:
    from fico_registry.evaluator.report import Report

    img, txt = embeddings(corpus, 40)
    report = evaluate_embeddings(img, txt, corpus.caption_to_image, corpus.labels, device="cpu")
    report.model = {
        "name": "reference-dual",
        "family": "fg",
        "output": "continuous",
        "distribution": "fico-registry",
        "version": "0.1.0",
        "config_name": "tiny",
        "config": {"embed_dim": 16},
        "checkpoint": {"sha256": "c" * 64, "source": "w.pt"},
    }
    report.corpus = {"name": corpus.name, "split": corpus.split, "content_hash": corpus.content_hash}
    report.costs = {
        "encode": {
            "images": {"seconds": 0.2, "items": 20, "bytes": 1280, "bytes_per_item": 64.0},
            "texts": {"seconds": 0.5, "items": 100},
        },
        "query_time": None,
    }
    report.settings["batch_size"] = 8
    report.to_json(tmp_path / "report.json")
    res = make_submission(
        corpus, "reference-dual", tmp_path / "s", images=img, texts=txt, report=tmp_path / "report.json", device="cpu"
    )
    assert res.model.distribution == "fico-registry" and res.model.checkpoint_sha256 == "c" * 64
    assert res.model.family == "fg"
    assert res.costs.encode["images"].seconds == 0.2 and res.settings.batch_size == 8
    assert read_result(tmp_path / "s" / "submission.json") == res
    other = Report.from_json(tmp_path / "report.json")
    other.corpus = {"name": "x", "split": "y", "content_hash": "d" * 64}
    with pytest.raises(OptionError, match="the report was made on corpus x/y"):
        make_submission(corpus, "m", tmp_path / "s2", images=img, texts=txt, report=other, device="cpu")


def test_registered_model_names_get_their_family(corpus, tmp_path) -> None:
    img, txt = embeddings(corpus, 41)
    res = make_submission(corpus, "reference-hash", tmp_path / "s", images=img, texts=txt, device="cpu")
    assert res.model.family == "fg" or res.model.family is not None
    res = make_submission(corpus, "nobody knows me", tmp_path / "t", images=img, texts=txt, device="cpu")
    assert res.model.family is None


def test_submit_refuses_a_non_empty_folder(corpus, tmp_path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    img, txt = embeddings(corpus, 42)
    with pytest.raises(OptionError, match="not an empty folder"):
        make_submission(corpus, "m", tmp_path / "s", images=img, texts=txt)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x93NUMPY\x01\x00", "npy"),
        (pickle.dumps([1, 2], protocol=2), "pickle data"),
        (pickle.dumps([1, 2], protocol=5), "pickle data"),
        (b"PK\x03\x04rest", "a zip archive (.npz, torch .pt or similar)"),
        (b"\x7fELF\x02\x01", "an ELF executable"),
        (b"MZ\x90\x00", "a Windows executable"),
        (b"#!/usr/bin/env python", "a script"),
        (b"\x89HDF\r\n", "an HDF5 file"),
        ((20).to_bytes(8, "little") + b'{"a": 1}', "safetensors"),
        (b"hello world, plain text", "an unrecognised format"),
    ],
)
def test_sniff_decides_by_content(head, kind) -> None:
    assert ev.sniff(head[:16]) == kind


def test_npy_header_checks(tmp_path) -> None:
    good = tmp_path / "a.npy"
    np.save(good, np.arange(12, dtype=np.float32).reshape(3, 4))
    info = ev.inspect_npy(good)
    assert info.shape == (3, 4) and info.dtype == np.float32
    assert np.array_equal(ev.open_array(good, info), np.arange(12).reshape(3, 4))
    truncated = tmp_path / "t.npy"
    truncated.write_bytes(good.read_bytes()[:-4])
    with pytest.raises(ev.EvidenceError, match="truncated"):
        ev.inspect_npy(truncated)
    big_endian = tmp_path / "be.npy"
    np.save(big_endian, np.arange(12, dtype=">f4").reshape(3, 4))
    array = ev.open_array(big_endian, ev.inspect_npy(big_endian))
    assert array.dtype == np.float32 and array.dtype.isnative and array[2, 3] == 11
    strings = tmp_path / "s.npy"
    np.save(strings, np.array(["a", "b"]))
    with pytest.raises(ev.EvidenceError, match="plain numeric array"):
        ev.inspect_npy(strings)


def test_safetensors_header_checks(tmp_path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "a.safetensors"
    save_file({"x": np.ones((2, 3), np.float32)}, str(path))
    tensor, info = ev.inspect(path, "safetensors")
    assert tensor == "x" and info.shape == (2, 3)
    assert np.array_equal(ev.open_array(path, info), np.ones((2, 3)))
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    bad = json.loads(raw[8 : 8 + n])
    bad["x"]["data_offsets"] = [0, 10**9]
    header = json.dumps(bad).encode()
    (tmp_path / "b.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n :])
    with pytest.raises(ev.EvidenceError, match="do not match"):
        ev.inspect(tmp_path / "b.safetensors", "safetensors")
    with pytest.raises(ev.EvidenceError, match="no tensor named 'y'"):
        ev.inspect(path, "safetensors", "y")


def test_safe_url_filter() -> None:
    assert safe_url("https://example.org/x") == "https://example.org/x"
    for url in ("javascript:alert(1)", " javascript:alert(1)", "data:text/html,x", None, 5, "java\nscript:x"):
        assert safe_url(url) is None


def test_plot_labels_are_literal() -> None:
    from fico_registry.leaderboard.plots import PlotEntry, accuracy_cost_svg, pr_curves_svg, safe_label

    assert safe_label("_hidden") == " _hidden"
    entries = [
        PlotEntry(
            label=name,
            family="fg",
            output="continuous",
            rsum=100.0 + i,
            pr11={"i2t": [0.5] * 11, "t2i": None},
            bytes_per_item=64.0,
            encode_ms_per_item=None,
        )
        for i, name in enumerate(("$\\frac{a$", "_x", "a $b$ c"))
    ]
    assert pr_curves_svg(entries).startswith(b"<?xml")  # mathtext would fail to parse the first name
    assert accuracy_cost_svg(entries).startswith(b"<?xml")


def test_standard_protocol_is_the_evaluator_default() -> None:
    assert tuple(DEFAULT_RECALL_KS) == standard.RECALL_KS and tuple(DEFAULT_MAP_KS) == standard.MAP_KS


def test_parse_size() -> None:
    assert parse_size("2GB") == 2 << 30 and parse_size("64KiB") == 64 << 10 and parse_size("1000") == 1000
    with pytest.raises(OptionError):
        parse_size("lots")


def test_docs_use_real_options() -> None:
    """Every option docs/submitting.md shows for `fico submit` / `fico leaderboard` exists."""
    from fico_registry.cli.leaderboard import build_cmd, check_cmd, submit_cmd

    text = (Path(__file__).parents[1] / "docs" / "submitting.md").read_text()
    commands = {"submit": submit_cmd, "leaderboard build": build_cmd, "leaderboard check": check_cmd}
    seen = set()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        line = block.replace("\\\n", " ")
        for name, command in commands.items():
            if f"fico {name} " in line:
                known = {opt for param in command.params for opt in param.opts}
                used = set(re.findall(r"(?<=\s)(--[a-z0-9-]+|-o)(?=\s)", line))
                assert used <= known, (name, used - known)
                seen.add(name)
    assert seen == set(commands)
