"""Cascade entries on the leaderboard: submit -> verify -> build, and forged cascade evidence.

A tiny cascade (reference-dual screening, scan re-ranking, random tiny weights) is run once with
its evidence kept, saved as `fico evaluate-cascade --save-evidence` saves it, and submitted at
k = 3 through the CLI. Copies of that submission are then tampered with: a changed re-ranked
score, a dropped pair, an extra pair, a pair out of range. The board must accept the honest one
with the cascade's own metrics and reject each forgery with a reason that names what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fico_registry.cli.main import cli
from fico_registry.errors import DataFormatError, OptionError
from fico_registry.leaderboard import build_leaderboard, verify_submission
from fico_registry.leaderboard.cascade_entry import read_cascade_run, save_cascade_run
from fico_registry.results.record import CascadeInfo, Evidence, read_result
from fico_registry.studies.cascade import evaluate_cascade

N_IMAGES = 12


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from fico_registry.data import Corpus, synthetic

    root = tmp_path_factory.mktemp("lb-cascade")
    synthetic(n_images=N_IMAGES, seed=5, root=root / "corpus", split="test")
    corpus = Corpus.load(root / "corpus")
    doc = evaluate_cascade("reference-dual", "scan", corpus, ks=(3, "N"), first_config="tiny", rerank_config="tiny",
                           device="cpu", standalone=False, keep_evidence=True)  # fmt: skip
    save_cascade_run(doc, corpus, root / "evidence")
    subs = root / "submissions"
    out = invoke("submit", "--corpus", str(root / "corpus"), "--cascade-from", str(root / "evidence"), "--k", "3",
                 "--submitter", "carol", "--device", "cpu", "-o", str(subs / "honest"))  # fmt: skip
    assert out.exit_code == 0, out.output
    return {"root": root, "corpus": corpus, "doc": doc, "subs": subs}


def _load(folder: Path, role: str) -> np.ndarray:
    return np.load(folder / f"{role}.npy", allow_pickle=False)


def _forge(run, name: str, changes: dict[str, np.ndarray], *, fix_claim: bool = True) -> Path:
    """A copy of the honest submission with some evidence arrays replaced (and, like a careful forger,
    submission.json updated to the new files' sha256, size and shape)."""
    folder = run["subs"] / name
    shutil.copytree(run["subs"] / "honest", folder)
    doc = json.loads((folder / "submission.json").read_text())
    for role, array in changes.items():
        target = folder / f"{role}.npy"
        np.save(target, array, allow_pickle=False)
        if fix_claim:
            entry = doc["evidence"][role]
            entry.update(sha256=hashlib.sha256(target.read_bytes()).hexdigest(), bytes=target.stat().st_size,
                         shape=list(array.shape), dtype=str(array.dtype))  # fmt: skip
    (folder / "submission.json").write_text(json.dumps(doc))
    return folder


def _corpus_map(run) -> dict:
    return {run["corpus"].content_hash: run["corpus"]}


def _instance_and_category(result) -> tuple:
    return result.metrics.instance, result.metrics.category


def test_a_cascade_submission_round_trips_through_verify_and_build(run) -> None:
    honest = run["subs"] / "honest"
    claimed = read_result(honest / "submission.json")
    assert claimed.model.name == "reference-dual -> scan @3" and claimed.model.output == "cascade"
    assert claimed.evidence.kind == "cascade" and claimed.evidence.cascade.k == 3
    assert claimed.costs.query_time.pairs == sum(run["doc"]["by_k"]["3"]["costs"]["rerank_pairs"].values())
    verdict = verify_submission(honest, _corpus_map(run))
    assert verdict.accepted, verdict.reasons
    # the board's numbers are the cascade's own (evaluate_cascade's defaults are the board's protocol)
    by_k = run["doc"]["by_k"]["3"]
    for direction in ("i2t", "t2i"):
        for key, value in by_k["instance"][direction].items():
            assert verdict.result.metrics.instance[direction][key] == pytest.approx(value, abs=1e-12)
        got = verdict.result.metrics.category[direction]["mAP@100"]
        assert got == pytest.approx(by_k["category"][direction]["mAP@100"])
    assert verdict.storage["images"] == 16 * 4  # reference-dual tiny: 16 float32 per item

    site = run["root"] / "site"
    result = build_leaderboard(run["subs"], [run["corpus"]], site, plots=False)
    assert [v.submission for v in result.accepted] == ["honest"], [v.reasons for v in result.rejected]
    page = next(site.glob("synthetic-test-*.html")).read_text()
    assert "reference-dual → scan @3" in page and "cascade (cosine)" in page
    entries = json.loads(next((site / "results").glob("*.json")).read_text())["entries"]
    assert entries[0]["result"]["evidence"]["cascade"]["rerank"] == "scan"


def test_k_n_entry_from_python_is_the_reranker_alone(run, tmp_path) -> None:
    from fico_registry.leaderboard.cascade_entry import make_cascade_submission

    saved = read_cascade_run(run["root"] / "evidence", "n", run["corpus"])
    result = make_cascade_submission(run["corpus"], tmp_path / "n", saved)
    assert result.evidence.cascade.label() == "reference-dual -> scan @N"
    pairs = run["doc"]["by_k"]["N"]["costs"]["rerank_pairs"]
    assert pairs == {"i2t": N_IMAGES * N_IMAGES * 5, "t2i": N_IMAGES * 5 * N_IMAGES}
    assert verify_submission(tmp_path / "n", _corpus_map(run)).accepted


def _one_score_raised(folder: Path, corpus) -> np.ndarray:
    """i2t scores with one re-ranked positive raised above its query's short list, for a query whose
    re-ranker put a negative first: i2t R@1 changes."""
    pairs, scores = _load(folder, "i2t_pairs"), _load(folder, "i2t_scores").copy()
    c2i = np.asarray(corpus.caption_to_image)
    for query in range(corpus.n_images):
        rows = np.flatnonzero(pairs[:, 0] == query)
        positive = rows[c2i[pairs[rows, 1]] == query]
        top = rows[np.argmax(scores[rows])]
        if len(positive) and c2i[pairs[top, 1]] != query:
            scores[positive[0]] = scores[rows].max() + 1.0
            return scores
    raise AssertionError("no short list with a positive below a negative: change the fixture's seed")


def test_a_changed_rerank_score_is_rejected(run) -> None:
    honest = run["subs"] / "honest"
    scores = _load(honest, "i2t_scores").copy()
    scores[0] += 0.5
    edited = _forge(run, "edited-score", {"i2t_scores": scores}, fix_claim=False)
    reasons = verify_submission(edited, _corpus_map(run)).reasons
    assert reasons and "i2t_scores.npy: sha256 does not match submission.json" in reasons[0]

    forged = _forge(run, "forged-score", {"i2t_scores": _one_score_raised(honest, run["corpus"])})
    reasons = verify_submission(forged, _corpus_map(run)).reasons
    assert reasons and "claimed metrics differ from the recomputed ones" in reasons[0] and "i2t R@1" in reasons[0]
    shutil.rmtree(edited)
    shutil.rmtree(forged)


def test_a_dropped_extra_or_out_of_range_pair_is_rejected_by_name(run) -> None:
    honest = run["subs"] / "honest"
    pairs, scores = _load(honest, "t2i_pairs"), _load(honest, "t2i_scores")
    dropped = _forge(run, "dropped-pair", {"t2i_pairs": pairs[1:], "t2i_scores": scores[1:]})
    reasons = verify_submission(dropped, _corpus_map(run)).reasons
    query, candidate = pairs[0]
    assert reasons and f"no re-ranker score for text query {query} and candidate {candidate}" in reasons[0]

    outside = next(c for c in range(N_IMAGES) if not ((pairs[:, 0] == 0) & (pairs[:, 1] == c)).any())
    extra = _forge(run, "extra-pair", {"t2i_pairs": np.concatenate([pairs, [[0, outside]]]),
                                       "t2i_scores": np.concatenate([scores, [0.0]])})  # fmt: skip
    reasons = verify_submission(extra, _corpus_map(run)).reasons
    assert reasons and "the 1 others lie outside every query's short list" in reasons[0]

    aliased = pairs.copy()
    aliased[0, 1] = N_IMAGES  # query q, candidate N would alias (q + 1, 0) in a flat index
    wild = _forge(run, "out-of-range", {"t2i_pairs": aliased})
    reasons = verify_submission(wild, _corpus_map(run)).reasons
    assert reasons and f"t2i_pairs row 0: candidate {N_IMAGES} is outside 0..{N_IMAGES - 1}" in reasons[0]

    floats = _forge(run, "float-pairs", {"t2i_pairs": pairs.astype(np.float64)})
    reasons = verify_submission(floats, _corpus_map(run)).reasons
    assert reasons and "t2i_pairs must hold integers" in reasons[0]
    for folder in (dropped, extra, wild, floats):
        shutil.rmtree(folder)


def test_cascade_schema_and_old_results() -> None:
    file = {"format": "npy", "sha256": "0" * 64, "shape": [2, 2], "dtype": "float32", "bytes": 144}
    roles = ("images", "texts", "i2t_pairs", "i2t_scores", "t2i_pairs", "t2i_scores")
    files = {role: {**file, "file": f"{role}.npy"} for role in roles}
    both = {"images": files["images"], "texts": files["texts"]}
    info = {"first": "ucch", "rerank": "scan", "k": 100, "first_measure": "hamming", "first_bits": 64}
    assert CascadeInfo.model_validate(info).label() == "ucch -> scan @100"
    Evidence.model_validate({"kind": "cascade", "cascade": info, **files})
    with pytest.raises(ValueError, match="goes with kind 'cascade'"):
        Evidence.model_validate({"kind": "cascade", **files})
    with pytest.raises(ValueError, match="cascade evidence needs exactly"):
        Evidence.model_validate({"kind": "cascade", "cascade": info, **both})
    with pytest.raises(ValueError, match="goes with kind 'cascade'"):
        Evidence.model_validate({"kind": "embeddings", "cascade": info, **both})
    with pytest.raises(ValueError, match="k"):
        CascadeInfo.model_validate({**info, "k": 0})
    # an evidence block written before cascades existed still reads
    Evidence.model_validate({"kind": "embeddings", **both})


def test_saved_runs_and_cli_errors(run, tmp_path) -> None:
    evidence = run["root"] / "evidence"
    with pytest.raises(OptionError, match="k = 3, N; choose one of them with --k, not 7"):
        read_cascade_run(evidence, 7, run["corpus"])
    with pytest.raises(DataFormatError, match="--save-evidence"):
        read_cascade_run(tmp_path, 3, run["corpus"])
    with pytest.raises(OptionError, match="not an empty folder"):
        save_cascade_run(run["doc"], run["corpus"], evidence)
    out = CliRunner().invoke(cli, ["submit", "--corpus", str(run["root"] / "corpus"), "--cascade-from", str(evidence),
                                   "-o", str(tmp_path / "x")], obj={})  # fmt: skip
    assert out.exit_code != 0 and "--cascade-from DIR and --k K go together" in out.output
    out = CliRunner().invoke(cli, ["evaluate-cascade", "reference-dual", "scan", "--index", "flat", "--save-evidence",
                                   str(tmp_path / "ev")], obj={})  # fmt: skip
    assert out.exit_code != 0 and "--save-evidence needs the exact first stage" in out.output
