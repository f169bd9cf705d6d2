"""Coarse-to-fine cascades: the ranking rule, the boundary tie rule, pair counts, FAISS first stages, memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fico_registry.errors import OptionError
from fico_registry.evaluator.cascade_scores import CascadeScores, DualPairs, PairCost
from fico_registry.evaluator.engine import run_direction
from fico_registry.evaluator.relevance import positives_of_images, positives_of_texts
from fico_registry.evaluator.similarity import prepare_embeddings
from fico_registry.evaluator.sources import EmbeddingScores
from fico_registry.studies.cascade import evaluate_cascade, parse_ks

N_IMAGES = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from fico_registry.data import synthetic

    return synthetic(n_images=N_IMAGES, root=tmp_path_factory.mktemp("cascade-synthetic"))


def _metrics(report: dict) -> tuple:
    return report["instance"], report["category"]


@pytest.fixture(scope="module")
def dual_then_scan(corpus):
    scorers = []
    out = evaluate_cascade(
        "reference-dual", "scan", corpus, ks=(1, 7, "N"), first_config="tiny", rerank_config="tiny", device="cpu",
        on_scorer=scorers.append,
    )  # fmt: skip
    return out, scorers


def test_k_n_is_the_reranker_alone_and_k_1_keeps_the_first_stage_r1(dual_then_scan):
    out, _ = dual_then_scan
    assert _metrics(out["by_k"]["N"]) == _metrics(out["rerank"])
    for direction in ("i2t", "t2i"):
        assert out["by_k"]["1"]["instance"][direction]["R@1"] == out["first"]["instance"][direction]["R@1"]
        # the top K (K >= k) is the first stage's top K as a set: R@10 cannot move at k = 7
        assert out["by_k"]["7"]["instance"][direction]["R@10"] == out["first"]["instance"][direction]["R@10"]
    # the run is not trivial: the two stand-alone models disagree somewhere
    assert _metrics(out["first"]) != _metrics(out["rerank"])


def test_reranked_pairs_are_exactly_k_per_query(dual_then_scan, corpus):
    out, scorers = dual_then_scan
    n_txt = corpus.n_captions
    for key, k in (("1", 1), ("7", 7), ("N", None)):
        costs = out["by_k"][key]["costs"]
        assert costs["boundary_tie_pairs"] == {"i2t": 0, "t2i": 0}  # continuous scores: no ties at k
        assert costs["rerank_pairs"] == {
            "i2t": N_IMAGES * (k or n_txt),
            "t2i": n_txt * (k or N_IMAGES),
        }
    # scan scores given pairs itself (score_pairs): batches of at most 256 pairs that mix queries
    assert max(s.cost.largest_call for s in scorers[:4]) <= 256
    assert sum(s.cost.calls for s in scorers[2:4]) < N_IMAGES + n_txt  # fewer calls than queries
    assert sum(s.cost.pairs for s in scorers[2:4]) == N_IMAGES * 7 + n_txt * 7
    assert set(out["by_k"]["7"]["costs"]["seconds"]) == {"encode", "screen", "rerank"}
    assert out["by_k"]["7"]["costs"]["extrapolated"]["1M/5M"]["rerank_pairs"] == 1_000_000 * 7 + 5_000_000 * 7


class _TableScorer:
    """Re-ranker scores from a fixed (n_images, n_texts) table: integer values, so it ties too."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table, self.cost, self.asked = table, PairCost(), []

    def score(self, query_side: str, queries: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
        for q in np.unique(queries):
            self.asked.append((int(q), sorted(candidates[queries == q].tolist())))
        self.cost.add(len(candidates), 0.0)
        q, c = torch.from_numpy(queries), torch.from_numpy(candidates)
        return (self.table[q, c] if query_side == "image" else self.table[c, q]).double()


def _brute_force_order(first: np.ndarray, fused: np.ndarray, k: int) -> tuple[set[int], np.ndarray]:
    """The boundary tie group rule by hand: the re-ranked set and a sort key per candidate (higher first)."""
    kth = np.sort(first)[::-1][k - 1]
    chosen = {c for c in range(len(first)) if first[c] >= kth}
    # re-ranked above everything; among them the re-ranker's value; below, the first stage's value
    key = np.array([(1e6 + fused[c]) if c in chosen else first[c] for c in range(len(first))])
    return chosen, key


@pytest.mark.parametrize("side", ["image", "text"])
def test_hamming_ties_at_k_rerank_the_whole_boundary_group(side):
    gen = torch.Generator().manual_seed(3)
    n_img, n_txt, bits = 9, 30, 4  # 4-bit codes: 16 values for 30 items, ties everywhere
    img_codes = torch.randint(0, 2, (n_img, bits), generator=gen)
    txt_codes = torch.randint(0, 2, (n_txt, bits), generator=gen)
    img, txt, info = prepare_embeddings(img_codes, txt_codes, "hamming", torch.device("cpu"))
    first = EmbeddingScores(img, txt, "hamming", side, info["bits"])
    table = torch.randint(0, 3, (n_img, n_txt), generator=gen).double()  # re-ranker ties too
    for k in (1, 3, 5):
        scorer = _TableScorer(table)
        cascade = CascadeScores(first, scorer, k, side)
        block = cascade.block(0, first.n_queries)
        expected_pairs = 0
        for q in range(first.n_queries):
            first_row = first.block(q, q + 1)[0].double().numpy()
            fused = (table[q] if side == "image" else table[:, q]).numpy()
            chosen, key = _brute_force_order(first_row, fused, k)
            expected_pairs += len(chosen)
            assert scorer.asked[q] == (q, sorted(chosen))
            row = block[q].numpy()
            # same order and the same ties as the hand-made key, for every pair of candidates
            assert np.array_equal(np.sign(row[:, None] - row[None, :]), np.sign(key[:, None] - key[None, :]))
            assert len(chosen) >= k
        assert cascade.reranked == expected_pairs == scorer.cost.pairs
        assert cascade.boundary_extra == expected_pairs - k * first.n_queries
        assert cascade.boundary_extra > 0  # the case really has ties at k


def _rank_of_best_positive(key: np.ndarray, positives: list[int], pessimistic: bool) -> int:
    best = max(key[p] for p in positives)
    ahead = (key > best).sum()
    tied = (key == best).sum() - sum(1 for p in positives if key[p] == best)
    return int(ahead + (tied if pessimistic else 0) + 1)


@pytest.mark.parametrize("ties", ["optimistic", "pessimistic"])
def test_hamming_cascade_recall_matches_brute_force(ties):
    gen = torch.Generator().manual_seed(5)
    n_img, per, bits, k = 8, 3, 4, 4
    n_txt = n_img * per
    c2i = np.repeat(np.arange(n_img), per)
    img, txt, info = prepare_embeddings(
        torch.randint(0, 2, (n_img, bits), generator=gen), torch.randint(0, 2, (n_txt, bits), generator=gen),
        "hamming", torch.device("cpu"),
    )  # fmt: skip
    table = torch.randint(0, 3, (n_img, n_txt), generator=gen).double()
    for side, positives in (("image", positives_of_images(c2i, n_img)), ("text", positives_of_texts(c2i))):
        first = EmbeddingScores(img, txt, "hamming", side, info["bits"])
        source = CascadeScores(first, _TableScorer(table), k, side)
        stats = run_direction(
            source, positives, None, recall_ks=(1, 5), map_ks=(), map_variant="fico", ties=ties, budget=1 << 24,
            device=torch.device("cpu"),
        )  # fmt: skip
        for q in range(first.n_queries):
            first_row = first.block(q, q + 1)[0].double().numpy()
            fused = (table[q] if side == "image" else table[:, q]).numpy()
            _, key = _brute_force_order(first_row, fused, k)
            pos = [int(p) for p in positives[q] if p >= 0]
            rank = _rank_of_best_positive(key, pos, ties == "pessimistic")
            engine_rank = stats.g[q] + (stats.t[q] if ties == "pessimistic" else 0) + 1
            assert engine_rank == rank


@pytest.mark.parametrize(
    ("first", "index", "ks"),
    [("reference-dual", "flat", (5,)), ("reference-hash", "binary-flat", (3, 10))],
    ids=["flat-equals-exact-engine", "binary-flat-equals-exact-hamming-engine"],
)
def test_exact_faiss_first_stage_equals_the_engine(corpus, first, index, ks):
    pytest.importorskip("faiss")
    runs = {
        how: evaluate_cascade(
            first,
            "reference-dual",
            corpus,
            ks=ks,
            first_config="tiny",
            rerank_config="tiny",
            device="cpu",
            index=how,
            standalone=False,
        )
        for how in (None, index)
    }
    assert _metrics(runs[index]["first"]) == _metrics(runs[None]["first"])
    for k in map(str, ks):
        assert _metrics(runs[index]["by_k"][k]) == _metrics(runs[None]["by_k"][k])
        if index == "binary-flat":  # integer Hamming scores: faiss and the engine agree on every tie
            assert runs[index]["by_k"][k]["costs"]["rerank_pairs"] == runs[None]["by_k"][k]["costs"]["rerank_pairs"]


def test_hnsw_first_stage_runs_and_counts_pairs(corpus):
    pytest.importorskip("faiss")
    out = evaluate_cascade(
        "reference-dual", "scan", corpus, ks=(5,), first_config="tiny", rerank_config="tiny", device="cpu",
        index="hnsw", standalone=False,
    )  # fmt: skip
    assert out["by_k"]["5"]["costs"]["rerank_pairs"] == {"i2t": N_IMAGES * 5, "t2i": corpus.n_captions * 5}
    assert out["by_k"]["5"]["costs"]["first_stage"] == "faiss hnsw"


def test_2000_x_10000_cascade_never_asks_for_the_full_matrix():
    gen = torch.Generator().manual_seed(0)
    n_img, n_txt, k = 2000, 10000, 100
    img, txt, _ = prepare_embeddings(
        torch.randn(n_img, 8, generator=gen), torch.randn(n_txt, 8, generator=gen), "cosine", torch.device("cpu")
    )
    c2i = np.arange(n_txt) % n_img
    for side, positives in (("image", positives_of_images(c2i, n_img)), ("text", positives_of_texts(c2i))):
        first = EmbeddingScores(img, txt, "cosine", side)
        scorer = DualPairs(img * 2, txt, "cosine")  # another model's scores, from the same shapes
        source = CascadeScores(first, scorer, k, side)
        run_direction(
            source, positives, None, recall_ks=(1, 10), map_ks=(), map_variant="fico", ties="expected",
            budget=64 << 20, device=torch.device("cpu"),
        )  # fmt: skip
        # one query's k candidates per call (a float32 tie at position k adds its group), never a matrix block
        assert k <= scorer.cost.largest_call <= k + source.boundary_extra
        assert scorer.cost.pairs == source.reranked == first.n_queries * k + source.boundary_extra
        assert source.boundary_extra < first.n_queries // 100
        assert scorer.cost.pairs < first.n_queries * first.n_candidates // 10  # the full matrix: 20M pairs


def test_bad_inputs_get_typed_errors(corpus):
    with pytest.raises(OptionError, match="positive integer or N"):
        parse_ks("10,0")
    with pytest.raises(OptionError, match="index must be one of"):
        evaluate_cascade("reference-dual", "scan", corpus, ks=(5,), first_config="tiny", rerank_config="tiny",
                         device="cpu", index="ivf-pq", standalone=False)  # fmt: skip
    with pytest.raises(OptionError, match="hashing model"):
        evaluate_cascade("reference-dual", "scan", corpus, ks=(5,), first_config="tiny", rerank_config="tiny",
                         device="cpu", index="binary-flat", standalone=False)  # fmt: skip
    with pytest.raises(OptionError, match="no embedding to screen"):
        evaluate_cascade("scan", "reference-dual", corpus, ks=(5,), first_config="tiny", rerank_config="tiny",
                         device="cpu", standalone=False)  # fmt: skip
    with pytest.raises(OptionError, match="exact first stage"):
        evaluate_cascade("reference-dual", "scan", corpus, ks=(5,), first_config="tiny", rerank_config="tiny",
                         device="cpu", index="flat", keep_evidence=True)  # fmt: skip
    assert parse_ks("10, 100,n") == [10, 100, "N"]


def test_cli_writes_the_document_and_the_accuracy_cost_plot(tmp_path):
    import json

    from click.testing import CliRunner

    from fico_registry.cli.main import cli

    out, plot = tmp_path / "cascade.json", tmp_path / "cascade.png"
    result = CliRunner().invoke(
        cli,
        ["evaluate-cascade", "reference-hash", "scan", "--first-config", "tiny", "--rerank-config", "tiny",
         "--k", "3,N", "--dataset-option", "n_images=12", "--device", "cpu", "-o", str(out), "--plot", str(plot),
         "--no-progress"],
        obj={},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc) >= {"first", "rerank", "by_k"} and list(doc["by_k"]) == ["3", "N"]
    costs = doc["by_k"]["3"]["costs"]
    assert set(costs["rerank_pairs"]) == {"i2t", "t2i"} and costs["bytes_per_item"] > 0
    # Hamming codes tie: the boundary groups are re-ranked too, and counted
    assert costs["rerank_pairs"]["i2t"] == 12 * 3 + costs["boundary_tie_pairs"]["i2t"]
    assert doc["by_k"]["N"]["instance"] == doc["rerank"]["instance"]
    assert plot.stat().st_size > 1000
    bad = CliRunner().invoke(cli, ["evaluate-cascade", "reference-dual", "scan", "--k", "0"], obj={})
    assert bad.exit_code != 0 and "positive integer or N" in bad.output


def test_fusion_reranker_at_k_n_is_its_own_rerank_of_every_candidate(corpus):
    """X-VLM's ITM as RERANK: k = N equals `evaluate(xvlm, rerank_k >= N)` (its ITC top-N, i.e. all, re-ranked)."""
    from fico_registry import load_model
    from fico_registry.evaluator.evaluate import evaluate

    try:
        xvlm = load_model("xvlm", config="tiny", device="cpu")
    except Exception as exc:  # optional plugin dependencies
        pytest.skip(f"xvlm (tiny) does not load here: {type(exc).__name__}: {exc}")
    out = evaluate_cascade(
        "reference-dual", xvlm, corpus, ks=(3, "N"), first_config="tiny", device="cpu", standalone=False
    )
    own = evaluate(xvlm, corpus, device="cpu", cache=False, rerank_k=corpus.n_captions).to_dict()
    assert _metrics(out["by_k"]["N"]) == _metrics(own)
    assert out["by_k"]["3"]["costs"]["rerank_pairs"] == {"i2t": N_IMAGES * 3, "t2i": corpus.n_captions * 3}
    # score_pairs batches mix the queries of a block: fewer calls than queries
    assert out["by_k"]["3"]["costs"]["largest_rerank_call"] > 3
    assert sum(out["by_k"]["3"]["costs"]["rerank_calls"].values()) < N_IMAGES + corpus.n_captions


class _PairsToo:
    """A Scorer that also scores given pairs (here one by one through score): the cascade should use it."""

    def __init__(self, inner) -> None:
        self.inner, self.pair_calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score_pairs(self, images, texts):
        self.pair_calls += 1
        n = len(next(iter(texts.values())))

        def row(features, i):
            return {k: v[i : i + 1] for k, v in features.items()}

        one = [(row(images, i), row(texts, i)) for i in range(n)]
        return torch.stack([self.inner.score(image, text)[0, 0] for image, text in one])


def test_cross_attention_plugin_with_score_pairs_is_batched_across_queries(corpus, dual_then_scan):
    from fico_registry import load_model
    from fico_registry.models.loading import Model

    scan = load_model("scan", config="tiny", device="cpu")
    wrapped = Model(
        scan.spec, _PairsToo(scan.encoder), config_name="tiny", config=scan.config, checkpoint=None, device="cpu"
    )
    out = evaluate_cascade(
        "reference-dual", wrapped, corpus, ks=(7,), first_config="tiny", device="cpu", standalone=False
    )
    assert wrapped.encoder.pair_calls > 0
    assert out["by_k"]["7"]["costs"]["rerank_pairs"] == dual_then_scan[0]["by_k"]["7"]["costs"]["rerank_pairs"]
    assert sum(out["by_k"]["7"]["costs"]["rerank_calls"].values()) < N_IMAGES + corpus.n_captions
    # the plugin's own pair scores may differ from score()'s in the last bits; the rule does not
    for direction in ("i2t", "t2i"):
        assert out["by_k"]["7"]["instance"][direction]["R@10"] == out["first"]["instance"][direction]["R@10"]


class _ScoreOnly:
    """A Scorer with score() only (no score_pairs): the cascade asks one query's candidates per call."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def encode_images(self, batch):
        return self.inner.encode_images(batch)

    def encode_texts(self, batch):
        return self.inner.encode_texts(batch)

    def score(self, images, texts):
        return self.inner.score(images, texts)


def test_cross_attention_without_score_pairs_is_asked_one_query_at_a_time(corpus, dual_then_scan):
    from fico_registry import load_model
    from fico_registry.models.loading import Model

    scan = load_model("scan", config="tiny", device="cpu")
    plain = Model(scan.spec, _ScoreOnly(scan.encoder), config_name="tiny", config=scan.config, checkpoint=None,
                  device="cpu")  # fmt: skip
    scorers = []
    out = evaluate_cascade("reference-dual", plain, corpus, ks=(7,), first_config="tiny", device="cpu",
                           standalone=False, on_scorer=scorers.append)  # fmt: skip
    assert max(s.cost.largest_call for s in scorers) <= 7  # one query against at most its own candidates
    assert sum(s.cost.calls for s in scorers) == N_IMAGES + corpus.n_captions
    # scan's score_pairs and its score give the same ranking here (their scores agree to ~1e-7)
    assert _metrics(out["by_k"]["7"]) == _metrics(dual_then_scan[0]["by_k"]["7"])


@pytest.mark.parametrize("first", ["reference-dual", "reference-hash"])
def test_a_cascade_is_recomputed_from_its_evidence(corpus, first):
    from fico_registry.errors import MissingInputError
    from fico_registry.studies.cascade import recompute_cascade

    out = evaluate_cascade(first, "scan", corpus, ks=(4, "N"), first_config="tiny", rerank_config="tiny", device="cpu",
                           standalone=False, keep_evidence=True)  # fmt: skip
    evidence = out["evidence"]
    for k in ("4", "N"):
        again = recompute_cascade(evidence, k, corpus)
        assert _metrics(again) == _metrics(out["by_k"][k])
        assert again["costs"]["rerank_pairs"] == out["by_k"][k]["costs"]["rerank_pairs"]
        assert len(evidence["pairs"][k]["i2t"]["scores"]) == out["by_k"][k]["costs"]["rerank_pairs"]["i2t"]
    # scores that were not the re-ranker's give other metrics; a pair left out is refused
    negated = {d: {**a, "scores": -a["scores"]} for d, a in evidence["pairs"]["4"].items()}
    flipped = {**evidence, "pairs": {"4": negated}}
    assert _metrics(recompute_cascade(flipped, 4, corpus)) != _metrics(out["by_k"]["4"])
    short = {d: {name: a[name][1:] for name in a} for d, a in evidence["pairs"]["4"].items()}
    with pytest.raises(MissingInputError, match="no re-ranker score"):
        recompute_cascade({**evidence, "pairs": {"4": short}}, 4, corpus)
    with pytest.raises(OptionError, match="not 7"):
        recompute_cascade(evidence, 7, corpus)
