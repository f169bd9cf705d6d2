"""A board whose corpus carries judgments: judged columns, recomputed and checked like the rest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fico_registry.leaderboard import build_leaderboard, make_submission, standard, verify_submission


@pytest.fixture(scope="module")
def judged_corpus(tmp_path_factory):
    from fico_registry.data import Corpus, synthetic
    from fico_registry.data.synthetic import graded_judgments

    root = tmp_path_factory.mktemp("lbj")
    base = synthetic(n_images=16, seed=5, root=root / "src", split="test")
    base.with_judgments("shared-objects", graded_judgments(base)).save(root / "corpus")
    return Corpus.load(root / "corpus")


def _submit(corpus, folder, seed):
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((corpus.n_images, 8)).astype(np.float32)
    txt = (img[corpus.caption_to_image] + rng.standard_normal((corpus.n_captions, 8))).astype(np.float32)
    make_submission(corpus, f"model {seed}", folder, images=img, texts=txt, device="cpu")
    return folder


def _edit(folder, change):
    path = folder / "submission.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_judged_columns_are_recomputed_and_shown(judged_corpus, tmp_path):
    subs = tmp_path / "subs"
    good = _submit(judged_corpus, subs / "good", 1)
    claim = json.loads((good / "submission.json").read_text())
    judged = claim["metrics"]["judged"]["shared-objects"]
    assert judged["i2t"]["mAP@R"] is not None and judged["t2i"]["gain"] == standard.GAIN
    old = _submit(judged_corpus, subs / "old", 2)  # a claim without judged metrics (older results): accepted
    _edit(old, lambda d: d["metrics"].pop("judged"))
    forged = _submit(judged_corpus, subs / "forged", 3)
    _edit(forged, lambda d: d["metrics"]["judged"]["shared-objects"]["t2i"].__setitem__("R-P", 0.999))
    result = build_leaderboard(subs, [judged_corpus], tmp_path / "site", plots=False)
    assert sorted(v.submission for v in result.accepted) == ["good", "old"]
    (rejected,) = result.rejected
    assert "t2i shared-objects R-P: claimed 0.999" in rejected.reasons[0]
    shown = {v.submission: v.result.metrics.judged for v in result.accepted}
    assert shown["old"]["shared-objects"]["i2t"]["mAP@R"] is not None  # the board computed it from the evidence
    (page,) = [p for p in (tmp_path / "site").glob("*.html") if p.name != "index.html"]
    text = page.read_text()
    assert "SHARED-OBJECTS i2t" in text and "mAP@R" in text and "R-P" in text


def test_a_judged_claim_for_judgments_the_corpus_lacks_is_rejected(judged_corpus, tmp_path):
    folder = _submit(judged_corpus, tmp_path / "extra", 4)
    _edit(folder, lambda d: d["metrics"]["judged"].__setitem__("eccv", d["metrics"]["judged"]["shared-objects"]))
    verdict = verify_submission(folder, {judged_corpus.content_hash: judged_corpus})
    assert not verdict.accepted and "carries no such judgments" in verdict.reasons[0]


def test_bad_judged_metrics_fail_the_schema():
    from pydantic import ValidationError

    from fico_registry.results.record import Metrics

    instance = {"i2t": {"R@1": 0.5}, "t2i": {"R@1": 0.5}}
    Metrics(instance=instance, judged={"x": {"i2t": {"R-P": 0.5, "judged_queries": 3, "gain": "linear"}, "t2i": None}})
    for bad, words in (
        ({"x": {"i2t": {"R-P": 1.5}, "t2i": None}}, "R-P"),
        ({"x": {"i2t": {"AUC": 0.5}, "t2i": None}}, "unknown judged metric"),
        ({"x": {"i2t": {"judged_queries": -1}, "t2i": None}}, "non-negative integer"),
        ({"x": {"i2t": {"gain": "log"}, "t2i": None}}, "linear"),
        ({"x": {"i2t": {"R-P": 0.5}}}, "both directions"),
    ):
        with pytest.raises(ValidationError, match=words):
            Metrics(instance=instance, judged=bad)
