"""The leaderboard's protocol: one set of evaluator settings for every entry, and the limits it enforces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fico_registry.results.record import Settings

if TYPE_CHECKING:  # pragma: no cover
    from fico_registry.evaluator.report import Report

# The evaluator's defaults (fico_registry.evaluate), repeated here so that importing this module
# does not import torch; tests/test_leaderboard.py checks they agree.
RECALL_KS: tuple[int, ...] = (1, 5, 10)
MAP_KS: tuple[int | None, ...] = (10, 100, None)
TIES = "expected"
MAP_VARIANT = "fico"
# judged relevance (a corpus carrying judgments, e.g. ECCV Caption / CxC): NDCG@10 / MRR@10, trec_eval's gain
NDCG_KS: tuple[int, ...] = (10,)
GAIN = "linear"
# the judged columns a board shows for each judgment set and direction
JUDGED_COLUMNS = ("mAP@R", "R-P", "R@1")

# Claimed fractions may differ from the recomputed ones by this much (the same evidence on
# another device can break near-ties differently); ranks (MedR, MeanR) by this share of their value.
FRACTION_TOLERANCE = 1e-3
RANK_RELATIVE_TOLERANCE = 1e-3

MAX_FILE_BYTES = 2 << 30  # per evidence file; a 5K x 25K float32 similarity matrix is 0.5 GB
MAX_JSON_BYTES = 1 << 20
MAX_FILES = 8


def evaluator_kwargs(has_labels: bool, judgments: Any = None) -> dict[str, Any]:
    """Keyword arguments of evaluate_embeddings / evaluate_similarity for the standard protocol."""
    out = {"recall_ks": RECALL_KS, "map_ks": MAP_KS if has_labels else (), "ties": TIES, "map_variant": MAP_VARIANT}
    if judgments:
        out.update(judgments=judgments, ndcg_ks=NDCG_KS, gain=GAIN)
    return out


def evaluate_evidence(
    kind: str, arrays: Mapping[str, Any], corpus: Any, *, measure: str, bits: int | None, device: str
) -> Report:
    """The board's metrics of evidence of `kind` "embeddings" (`arrays` images and texts, compared by
    `measure`) or "similarity" (i2t, optionally t2i) on `corpus`. A submission claims them and the board
    recomputes them with this one call, so both sides always run the same protocol."""
    from fico_registry.evaluator.evaluate import evaluate_embeddings, evaluate_similarity

    kwargs = evaluator_kwargs(corpus.labels is not None, getattr(corpus, "judgments", None))
    if kind == "embeddings":
        return evaluate_embeddings(
            arrays["images"],
            arrays["texts"],
            corpus.caption_to_image,
            corpus.labels,
            measure=measure,
            bits=bits,
            device=device,
            progress=False,
            **kwargs,
        )
    return evaluate_similarity(
        arrays["i2t"],
        corpus.caption_to_image,
        t2i=arrays.get("t2i"),
        labels=corpus.labels,
        device=device,
        progress=False,
        **kwargs,
    )


def protocol_differences(settings: Settings, has_labels: bool) -> list[str]:
    """How `settings` depart from the standard protocol (empty when they follow it)."""
    problems = []
    if settings.ties != TIES:
        problems.append(f"ties {settings.ties!r} (the board uses {TIES!r})")
    if tuple(settings.recall_ks) != RECALL_KS:
        problems.append(f"recall_ks {settings.recall_ks} (the board uses {list(RECALL_KS)})")
    want_map_ks = list(MAP_KS) if has_labels else []
    if list(settings.map_ks) != want_map_ks:
        problems.append(f"map_ks {settings.map_ks} (the board uses {want_map_ks} on this corpus)")
    want_variant = MAP_VARIANT if has_labels else None
    if settings.map_variant != want_variant:
        problems.append(f"map_variant {settings.map_variant!r} (the board uses {want_variant!r} on this corpus)")
    return problems
