"""The engine's fast paths give exactly what their plain versions give.

- 32-bit sort keys (|scores| < 2, small integers) vs the 64-bit keys every block can use;
- tie groups, the top-k head of each row and PR11's level crossings found by bisection;
- label relevance from 64-bit label words vs the label product;
- the block-size cap.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fico_registry.evaluator import budget, engine, metrics, relevance


def _blocks(rng: np.random.Generator):
    """Float blocks in (-2, 2) with ties, integer (Hamming-like) blocks, both with random relevance."""
    for _ in range(60):
        b, w = int(rng.integers(1, 6)), int(rng.integers(1, 50))
        rel = torch.from_numpy(rng.random((b, w)) < rng.random())
        yield torch.from_numpy(rng.standard_normal((b, w)).clip(-1.99, 1.99).astype(np.float32)), rel
        yield torch.from_numpy((rng.integers(-4, 5, (b, w)) / 4).astype(np.float32)), rel
        yield torch.from_numpy(rng.integers(-64, 1, (b, w)).astype(np.int32)), rel


def _same_groups(x: metrics.Groups, y: metrics.Groups) -> None:
    for name in ("row", "a", "n", "r", "rb", "relevant"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


def test_narrow_and_wide_keys_rank_identically(monkeypatch):
    rng = np.random.default_rng(0)
    for scores, rel in _blocks(rng):
        narrow = engine._sorted_keys_with_relevance(scores.clone(), rel)
        assert narrow.dtype == np.int32
        best = scores.max(dim=1, keepdim=True).values - (0.25 if scores.dtype.is_floating_point else 1)
        best = torch.maximum(best, scores.min(dim=1, keepdim=True).values)
        with monkeypatch.context() as m:
            m.setattr(engine, "_fits_32bit_keys", lambda s: False)
            wide = engine._sorted_keys_with_relevance(scores.clone(), rel)
        assert wide.dtype == np.int64
        _same_groups(
            engine.groups_from_sorted(narrow, scores.shape[1]), engine.groups_from_sorted(wide, scores.shape[1])
        )
        for got, want in zip(
            engine._instance_from_sorted(narrow, scores, best),
            engine._instance_from_sorted(wide, scores, best),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("values", "dtype", "narrow"),
    [
        ([1.9999999, -1.9999999, 0.0, 0.0], torch.float32, True),
        ([2.0, 0.5], torch.float32, False),
        ([-2.0, 0.5], torch.float32, False),
        ([1e30, 0.5], torch.float32, False),
        ([(1 << 30) - 1, -((1 << 30) - 1)], torch.int64, True),
        ([1 << 30, 0], torch.int64, False),
    ],
)
def test_keys_are_narrow_only_when_exact(values, dtype, narrow):
    scores = torch.tensor([values], dtype=dtype)
    assert engine._fits_32bit_keys(scores) is narrow
    keys = engine._composite_keys_cpu(scores.clone(), torch.zeros_like(scores, dtype=torch.bool), narrow=narrow)
    assert keys.dtype == (np.int32 if narrow else np.int64)
    # ascending keys = descending scores, equal scores = equal keys
    want = torch.argsort(scores[0], descending=True, stable=True).numpy()
    np.testing.assert_array_equal(np.argsort(keys[0], kind="stable"), want)
    assert len(np.unique(keys[0])) == len(torch.unique(scores[0]))


def test_both_zeros_tie_in_narrow_keys():
    keys = engine._sorted_keys_with_relevance(torch.tensor([[0.0, -0.0, 0.5]]), torch.tensor([[True, False, False]]))
    assert keys.dtype == np.int32
    groups = engine.groups_from_sorted(keys, 3)
    assert (groups.a.tolist(), groups.n.tolist(), groups.r.tolist()) == ([1], [2], [1])


def test_instance_counts_for_a_best_outside_the_narrow_range():
    scores = torch.tensor([[0.5, -0.5, 0.1], [0.3, 0.3, -0.2]])
    keys = engine._sorted_keys_with_relevance(scores.clone(), torch.zeros_like(scores, dtype=torch.bool))
    best = torch.tensor([[-torch.inf], [0.3]])  # a query without positives has the -inf floor
    g, eq = engine._instance_from_sorted(keys, scores, best)
    assert g.tolist() == [3, 0] and eq.tolist() == [0, 2]


def _random_groups(rng: np.random.Generator) -> metrics.Groups:
    scores = torch.from_numpy(rng.integers(0, 6, (7, 40)).astype(np.float32) / 8)
    rel = torch.from_numpy(rng.random((7, 40)) < 0.4)
    rel[3] = False  # a query without relevant items: no groups at all
    return engine.groups_from_sorted(engine._sorted_keys_with_relevance(scores, rel), 40)


def test_head_is_the_groups_starting_inside_the_top_k():
    rng = np.random.default_rng(1)
    for _ in range(20):
        groups = _random_groups(rng)
        for k in (0, 1, 2, 5, 17, 39, 40):
            _same_groups(groups.head(k), groups.select(groups.a < k))


def test_lower_bound_is_searchsorted_per_segment():
    rng = np.random.default_rng(2)
    values = np.sort(rng.integers(0, 30, 200))
    cuts = np.sort(rng.integers(0, 201, 12))
    lo, hi = cuts[:-1], cuts[1:]
    target = rng.integers(-1, 32, len(lo))
    got = metrics._lower_bound(lambda i: values[i], lo, hi, target)
    want = [a + np.searchsorted(values[a:b], t, side="left") for a, b, t in zip(lo, hi, target, strict=True)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n_classes", [5, 64, 70, 130])
def test_label_relevance_from_words_equals_the_label_product(n_classes):
    rng = np.random.default_rng(n_classes)
    labels = torch.from_numpy((rng.random((30, n_classes)) < 0.05).astype(np.float32))
    caption_map = torch.from_numpy(rng.permutation(np.repeat(np.arange(30), rng.integers(1, 4, 30))))
    image_level = (labels @ labels.T) > 0
    i2t = relevance.label_relevance(labels, labels, candidate_map=caption_map)
    t2i = relevance.label_relevance(labels, labels, query_map=caption_map)
    assert torch.equal(i2t(3, 17), image_level[3:17][:, caption_map])
    assert torch.equal(t2i(5, 40), image_level[caption_map[5:40]])
    assert torch.equal(i2t.shifted(2)(1, 9), image_level[3:11][:, caption_map])


def test_blocks_are_capped_at_the_efficient_size_but_never_below_a_gemm_worth():
    huge = 1 << 40
    assert budget.rows_per_block(25_000, 4, huge, True) * 25_000 <= budget.EFFICIENT_BLOCK_CELLS
    assert budget.rows_per_block(10_000_000, 4, huge, False) == budget.MIN_BLOCK_ROWS
    assert budget.rows_per_block(25_000, 4, 25_000 * 76 * 3, True) == 3  # the budget still rules


# -- rows wider than the budget: query blocks x candidate blocks ------------------------------------
def _same_reports(a, b) -> None:
    for level in ("instance", "category"):
        for direction in ("i2t", "t2i"):
            got, want = a.to_dict()[level][direction], b.to_dict()[level][direction]
            assert got.keys() == want.keys()
            for name, value in want.items():
                assert got[name] == (value if value is None else pytest.approx(value, abs=1e-12)), (
                    level,
                    direction,
                    name,
                )
    for direction in ("i2t", "t2i"):
        for name, values in a.per_query[direction].ap.items():
            np.testing.assert_allclose(
                values, b.per_query[direction].ap[name], atol=1e-12, err_msg=f"{direction} {name}"
            )


def _spy_candidate_blocks(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = engine._run_direction_by_candidate_blocks

    def spy(*args, **kwargs):
        calls.append(kwargs["label"])
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_run_direction_by_candidate_blocks", spy)
    return calls


def _uneven_task(rng: np.random.Generator, n_images: int = 40, n_classes: int = 70):
    caption_to_image = rng.permutation(np.repeat(np.arange(n_images), rng.integers(1, 6, n_images)))
    labels = (rng.random((n_images, n_classes)) < 0.05).astype(np.float32)
    return caption_to_image, labels


@pytest.mark.parametrize("measure", ["cosine", "hamming"])
def test_candidate_blocks_equal_whole_rows(measure, monkeypatch):
    from fico_registry import evaluate_embeddings

    calls = _spy_candidate_blocks(monkeypatch)
    monkeypatch.setenv(
        "FICO_HAMMING_PATH", "sort"
    )  # codes take the engine (the histogram path has no candidate blocks)

    rng = np.random.default_rng(5)
    caption_to_image, labels = _uneven_task(rng)
    if measure == "hamming":  # 8-bit codes: wide ties that straddle candidate blocks
        images = rng.integers(0, 2, (40, 8))
        texts = images[caption_to_image] ^ (rng.random((len(caption_to_image), 8)) < 0.2)
    else:
        images = rng.standard_normal((40, 16)).astype(np.float32)
        texts = (images[caption_to_image] + rng.standard_normal((len(caption_to_image), 16))).astype(np.float32)
    kwargs = dict(measure=measure, map_ks=(3, 10, 25), recall_ks=(1, 5, 10), device="cpu", progress=False)
    whole = evaluate_embeddings(images, texts, caption_to_image, labels, **kwargs)
    blocked = evaluate_embeddings(images, texts, caption_to_image, labels, memory_budget=1500, **kwargs)
    assert sorted(calls) == ["i2t", "t2i"]
    _same_reports(blocked, whole)


def test_candidate_blocks_for_given_score_matrices(monkeypatch):
    from fico_registry import evaluate_similarity

    calls = _spy_candidate_blocks(monkeypatch)

    rng = np.random.default_rng(6)
    caption_to_image, labels = _uneven_task(rng, n_classes=5)
    i2t = rng.integers(0, 4, (40, len(caption_to_image))).astype(np.float32)  # ties everywhere
    t2i = rng.standard_normal((len(caption_to_image), 40)).astype(np.float32)
    kwargs = dict(labels=labels, map_ks=(5, 20), device="cpu", progress=False)
    whole = evaluate_similarity(i2t, caption_to_image, t2i=t2i, **kwargs)
    blocked = evaluate_similarity(i2t, caption_to_image, t2i=t2i, memory_budget=700, **kwargs)
    assert sorted(calls) == ["i2t", "t2i"]
    _same_reports(blocked, whole)


def test_whole_rankings_still_need_whole_rows():
    from fico_registry import evaluate_embeddings
    from fico_registry.errors import MemoryBudgetError

    rng = np.random.default_rng(7)
    caption_to_image, labels = _uneven_task(rng)
    images = rng.standard_normal((40, 16)).astype(np.float32)
    texts = rng.standard_normal((len(caption_to_image), 16)).astype(np.float32)
    with pytest.raises(MemoryBudgetError, match="mAP@N"):
        evaluate_embeddings(images, texts, caption_to_image, labels, memory_budget=1500, device="cpu", progress=False)
