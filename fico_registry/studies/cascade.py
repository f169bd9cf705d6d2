"""Coarse-to-fine cascades: any first stage screens, any pair scorer re-ranks each query's top k.

evaluate_cascade returns {"first": report, "rerank": report, "by_k": {"10": report + costs, ...,
"N": ...}} as plain dicts. See docs/cascades.md for the ranking rule (fico_registry.evaluator.
cascade_scores), the tie rule at position k, and what each cost means.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from fico_registry.errors import OptionError
from fico_registry.evaluator.cascade_scores import (
    CascadeScores,
    CrossAttentionPairs,
    DualPairs,
    FusionPairs,
    IndexScores,
    PairCost,
    RecordingPairs,
    SparsePairs,
)
from fico_registry.evaluator.checks import check_mapping
from fico_registry.evaluator.evaluate import evaluate
from fico_registry.evaluator.evaluate_sources import evaluate_sources
from fico_registry.evaluator.options import DEFAULT_MAP_KS, DEFAULT_RECALL_KS, MetricOptions
from fico_registry.evaluator.similarity import prepare_embeddings
from fico_registry.evaluator.sources import EmbeddingScores, ScoreSource
from fico_registry.runtime.devices import resolve_device
from fico_registry.studies.costs.scales import Scale

INDEXES = ("flat", "hnsw", "binary-flat", "binary-ivf")
EXTRAPOLATE_TO = (Scale(1_000_000, 5_000_000),)
HNSW_M, HNSW_EF_CONSTRUCTION = 32, 200


@dataclass
class Encoded:
    images: Any
    texts: Any
    seconds: float


@dataclass
class FirstStage:
    """Both directions' first-stage score sources and what building them cost."""

    sources: dict[str, ScoreSource]  # "image" (i2t) / "text" (t2i)
    kind: str
    bytes_per_item: float
    build_seconds: float


def parse_ks(ks: Sequence[int | str] | str) -> list[int | str]:
    """'10,100,N' or [10, 100, 'N'] -> [10, 100, 'N'] (positive integers, or 'N' for all)."""
    items = ks.split(",") if isinstance(ks, str) else list(ks)
    out: list[int | str] = []
    for item in items:
        text = str(item).strip()
        if text.upper() == "N":
            value: int | str = "N"
        elif text.isdigit() and int(text) >= 1:
            value = int(text)
        else:
            raise OptionError(f"cascade k must be a positive integer or N (every candidate), got {item!r}")
        if value not in out:
            out.append(value)
    if not out:
        raise OptionError("give at least one cascade k, e.g. --k 10,100,N")
    return out


def _encode(model: Any, corpus: Any, device: torch.device, batch_size: int, progress: bool | None) -> Encoded:
    from fico_registry.models.encoding import encode_side
    from fico_registry.models.inputs import input_source

    pipeline_config = "tiny" if model.config_name == "tiny" else "default"
    out, seconds = {}, 0.0
    for side in ("image", "text"):
        source = input_source(
            model, corpus, side, device=str(device), progress=progress, pipeline_config=pipeline_config
        )
        result = encode_side(model, source, side, batch_size=batch_size, progress=progress)
        out[side], seconds = result.outputs, seconds + result.seconds
    return Encoded(out["image"], out["text"], seconds)


def _embeds(outputs: Any) -> Any:
    return outputs["embeds"] if isinstance(outputs, dict) else outputs


def _first_embeddings(model: Any, enc: Encoded, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str, int]:
    from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention

    spec = model.spec
    if spec.output is OutputKind.SIMILARITY and spec.query_time_attention is QueryTimeAttention.CROSS_ATTENTION:
        raise OptionError(
            f"{spec.name} scores pairs by cross-attention and has no embedding to screen with; "
            "use it as the re-ranker and pick a hashing, dual-encoder or fusion (ITC) model as FIRST"
        )
    bits = model.width if spec.output is OutputKind.BINARY else None
    img, txt, info = prepare_embeddings(_embeds(enc.images), _embeds(enc.texts), spec.measure, device, bits=bits)
    return img, txt, spec.measure, int(info.get("bits", 0))


def _faiss() -> Any:
    from fico_registry.studies.search import _faiss as load

    return load()


def _index_first_stage(
    img: torch.Tensor, txt: torch.Tensor, measure: str, index: str, depth: int | None, device: torch.device
) -> FirstStage:
    """Two FAISS indexes (texts for image queries, images for text queries), searched up front."""
    from fico_registry.studies.search import _flat_bytes, _hnsw_bytes, _ivf_bytes

    faiss = _faiss()
    binary = index.startswith("binary")
    if binary != (measure == "hamming"):
        need = "a hashing model (binary codes)" if binary else "a continuous model (cosine or inner product)"
        raise OptionError(f"--index {index} needs {need} as FIRST; this one compares by {measure}")
    if not binary and measure not in ("cosine", "inner_product"):
        raise OptionError(f"FAISS float indexes search by inner product; FIRST compares by {measure}")
    began = time.perf_counter()
    sources: dict[str, ScoreSource] = {}
    stored = 0
    for side, database, queries in (("image", txt, img), ("text", img, txt)):
        db, q = database.cpu().numpy(), queries.cpu().numpy()
        n = db.shape[0]
        exact = index in ("flat", "binary-flat")
        want = n if exact or depth is None else min(n, depth)
        if index == "flat":
            built = faiss.IndexFlatIP(db.shape[1])
            built.add(np.ascontiguousarray(db, dtype=np.float32))
            stored += _flat_bytes(built)
        elif index == "hnsw":
            built = faiss.IndexHNSWFlat(db.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
            built.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            built.add(np.ascontiguousarray(db, dtype=np.float32))
            built.hnsw.efSearch = max(64, want)  # HNSW returns at most efSearch results
            stored += _hnsw_bytes(built)
        elif index == "binary-flat":
            built = faiss.IndexBinaryFlat(db.shape[1] * 8)
            built.add(np.ascontiguousarray(db))
            stored += _flat_bytes(built)
        else:
            nlist = max(1, min(1024, int(math.sqrt(n))))
            quantizer = faiss.IndexBinaryFlat(db.shape[1] * 8)
            built = faiss.IndexBinaryIVF(quantizer, db.shape[1] * 8, nlist)
            built.train(np.ascontiguousarray(db))
            built.add(np.ascontiguousarray(db))
            built.nprobe = max(1, nlist // 4)
            stored += _ivf_bytes(built)
        scores, ids = built.search(np.ascontiguousarray(q), want)
        if binary:
            scores = -scores.astype(np.int32)  # Hamming distance -> similarity, as the engine's
        sources[side] = IndexScores(ids.astype(np.int64), scores, n, name=f"{index} ({side} queries)", device=device)
    items = img.shape[0] + txt.shape[0]
    return FirstStage(sources, f"faiss {index}", stored / items, time.perf_counter() - began)


def _first_stage(model: Any, enc: Encoded, device: torch.device, index: str | None, depth: int | None) -> FirstStage:
    img, txt, measure, n_bits = _first_embeddings(model, enc, device)
    if index is not None:
        if index not in INDEXES:
            raise OptionError(f"index must be one of {', '.join(INDEXES)}; got {index!r}")
        return _index_first_stage(img, txt, measure, index, depth, device)
    per_item = img.shape[1] * img.element_size() if img.ndim == 2 else img[0].numel() * img.element_size()
    sources: dict[str, ScoreSource] = {
        side: EmbeddingScores(img, txt, measure, side, n_bits) for side in ("image", "text")
    }
    return FirstStage(sources, f"exact {measure}", float(per_item), 0.0)


def _pair_scorer(model: Any, enc: Encoded, device: torch.device) -> Any:
    from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention

    spec = model.spec
    pairs_too = callable(getattr(model.encoder, "score_pairs", None))
    if spec.query_time_attention is QueryTimeAttention.FUSION_RERANK or (
        spec.query_time_attention is QueryTimeAttention.CROSS_ATTENTION and pairs_too
    ):  # a cross-attention plugin that scores given pairs itself gets batches that mix queries: fewer calls
        return FusionPairs(model, enc.images, enc.texts, device)
    if spec.query_time_attention is QueryTimeAttention.CROSS_ATTENTION:
        return CrossAttentionPairs(model, enc.images, enc.texts, device)
    bits = model.width if spec.output is OutputKind.BINARY else None
    img, txt, info = prepare_embeddings(_embeds(enc.images), _embeds(enc.texts), spec.measure, device, bits=bits)
    return DualPairs(img, txt, spec.measure, int(info.get("bits", 0)), name=spec.name)


def _extrapolate(k: int | str, measured: dict[str, Any], n_images: int, n_texts: int) -> dict[str, Any]:
    """Seconds at each target scale, each stage linear in what drives it (measured rates of this run).

    encode: per item; screen: per (image, text) cell, both directions (exhaustive search; an
    approximate index is cheaper); re-rank: per pair, with k pairs per query (the boundary tie
    groups of this run are not extrapolated).
    """
    out = {}
    pairs_measured = measured["pairs"]
    for scale in EXTRAPOLATE_TO:
        kk_i = scale.n_texts if k == "N" else min(int(k), scale.n_texts)
        kk_t = scale.n_images if k == "N" else min(int(k), scale.n_images)
        pairs = scale.n_images * kk_i + scale.n_texts * kk_t
        encode = measured["encode"] * (scale.n_images + scale.n_texts) / (n_images + n_texts)
        screen = 0.0 if k == "N" else measured["screen"] * scale.pairs / (n_images * n_texts)
        rerank = measured["rerank"] * pairs / max(1, pairs_measured)
        out[scale.short] = {
            "rerank_pairs": pairs,
            "seconds": {"encode": round(encode, 3), "screen": round(screen, 3), "rerank": round(rerank, 3)},
            "total_s": round(encode + screen + rerank, 3),
        }
    return out


def evaluate_cascade(
    first: Any,
    rerank: Any,
    corpus: Any,
    ks: Sequence[int | str] | str = (10, 100, "N"),
    *,
    first_config: str | dict[str, Any] = "default",
    first_checkpoint: Any = None,
    rerank_config: str | dict[str, Any] = "default",
    rerank_checkpoint: Any = None,
    index: str | None = None,
    index_depth: int | None = None,
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    map_ks: Sequence[int | None] = DEFAULT_MAP_KS,
    ties: str = "expected",
    map_variant: str = "fico",
    device: str | torch.device | None = "auto",
    memory_budget: int | str | None = None,
    batch_size: int = 32,
    standalone: bool = True,
    progress: bool | None = None,
    on_scorer: Any = None,
    keep_evidence: bool = False,
) -> dict[str, Any]:
    """Evaluate FIRST screening and RERANK re-ranking each query's top k, for every k in `ks`.

    first: a loaded Model or registered name (binary codes, continuous embeddings, or a fusion
    model's first-stage "embeds"), optionally searched through a FAISS `index` ("flat", "hnsw",
    "binary-flat", "binary-ivf"; approximate indexes return `index_depth` results per query,
    default the largest finite k, and what they do not return ties at the bottom). rerank: any
    model that scores (image, text) pairs. standalone=False skips the re-ranker's own report
    (it scores every pair). on_scorer(scorer) is called with each direction's pair scorer (tests).
    keep_evidence=True (exact first stages only) adds doc["evidence"]: numpy arrays (not JSON) of
    FIRST's outputs and, per k and direction, the re-ranker's sparse scores; recompute_cascade
    turns them back into the same report.
    """
    from fico_registry.models.loading import Model, load_model
    from fico_registry.plugin_api.cards import OutputKind

    wanted = parse_ks(ks)
    options = MetricOptions(recall_ks, map_ks, ties, map_variant, memory_budget, progress).checked()
    if keep_evidence and index is not None:
        raise OptionError("keep_evidence needs the exact first stage (index=None): an index's search is not evidence")
    dev_name = None if device == "auto" else str(device)
    if not isinstance(first, Model):
        first = load_model(first, config=first_config, checkpoint=first_checkpoint, device=dev_name)
    if not isinstance(rerank, Model):
        rerank = load_model(rerank, config=rerank_config, checkpoint=rerank_checkpoint, device=dev_name)
    dev = resolve_device(first.device if device == "auto" else device)
    c2i = check_mapping(corpus.caption_to_image, corpus.n_images, corpus.n_captions)
    finite = [k for k in wanted if isinstance(k, int)]  # the others are "N"
    depth = index_depth or max([*finite, *options.recall_ks, *[k for k in options.map_ks if k is not None]])
    first_enc = _encode(first, corpus, dev, batch_size, progress)
    rerank_enc = _encode(rerank, corpus, dev, batch_size, progress)
    stage = _first_stage(first, first_enc, dev, index, depth)

    began = time.perf_counter()
    first_report = evaluate_sources(
        stage.sources["image"], stage.sources["text"], c2i, corpus.labels, options,
        device=dev, settings={"measure": stage.kind}, started=began,
    )  # fmt: skip
    first_report.model = first.provenance()
    rerank_report = None
    if standalone:
        rerank_report = evaluate(rerank, corpus, device=dev, batch_size=batch_size, cache=False, **asdict(options))
    recorded: dict[str, dict[str, RecordingPairs]] | None = {} if keep_evidence else None
    by_k = {}
    for k in wanted:
        hook = _scorer_hook(on_scorer, recorded, k)
        by_k[str(k)] = _run_k(k, stage, rerank, rerank_enc, first_enc, c2i, options, dev, hook, corpus)
    evidence = None
    if keep_evidence:
        evidence = {
            "first": {
                "images": _embeds(first_enc.images), "texts": _embeds(first_enc.texts), "measure": first.spec.measure,
                "bits": first.width if first.spec.output is OutputKind.BINARY else None,
            },
            "pairs": {k: {d: r.arrays() for d, r in directions.items()} for k, directions in (recorded or {}).items()},
        }  # fmt: skip
    return {
        **({"evidence": evidence} if evidence is not None else {}),
        "first": first_report.to_dict(),
        "rerank": None if rerank_report is None else rerank_report.to_dict(),
        "by_k": by_k,
        "settings": {
            "first": first.name,
            "rerank": rerank.name,
            "index": index,
            "index_depth": depth if index else None,
            "ks": [str(k) for k in wanted],
            "first_stage": stage.kind,
            "boundary_ties": "the whole tie group at position k is re-ranked (counted in rerank_pairs)",
        },
    }


def _scorer_hook(on_scorer: Any, recorded: dict[str, dict[str, RecordingPairs]] | None, k: int | str) -> Any:
    """on_scorer as it is, or (when `recorded` collects evidence) wrapped to record k's pair scores per direction."""
    if recorded is None:
        return on_scorer
    recorded[str(k)] = {}

    def hook(scorer: Any, _k: str = str(k)) -> Any:
        wrapped = RecordingPairs(scorer)
        recorded[_k]["i2t" if "i2t" not in recorded[_k] else "t2i"] = wrapped
        if on_scorer is not None:
            on_scorer(scorer)
        return wrapped

    return hook


def _run_k(
    k: int | str, stage: FirstStage, rerank: Any, rerank_enc: Encoded, first_enc: Encoded, c2i: np.ndarray,
    options: MetricOptions, dev: torch.device, on_scorer: Any, corpus: Any,
) -> dict[str, Any]:  # fmt: skip
    began = time.perf_counter()
    sources: dict[str, CascadeScores] = {}
    for side in ("image", "text"):
        first = stage.sources[side]
        scorer = _pair_scorer(rerank, rerank_enc, dev)
        scorer.cost = PairCost()
        if on_scorer is not None:
            scorer = on_scorer(scorer) or scorer  # a hook may wrap the scorer (evidence recording)
        kk = first.n_candidates if k == "N" else min(int(k), first.n_candidates)
        sources[side] = CascadeScores(first, scorer, kk, side, label=f"cascade k={k} {side} queries")
    settings = {"measure": f"cascade ({stage.kind} first stage, {rerank.name} re-rank)", "cascade_k": str(k)}
    report = evaluate_sources(
        sources["image"], sources["text"], c2i, corpus.labels, options, device=dev, settings=settings, started=began
    ).to_dict()
    i2t, t2i = sources["image"], sources["text"]
    measured = {
        "encode": first_enc.seconds + rerank_enc.seconds,
        "screen": stage.build_seconds + i2t.screen_seconds + t2i.screen_seconds,
        "rerank": i2t.pairs.cost.seconds + t2i.pairs.cost.seconds,
        "pairs": i2t.reranked + t2i.reranked,
    }
    report["costs"] = {
        "rerank_pairs": {"i2t": i2t.reranked, "t2i": t2i.reranked},
        "boundary_tie_pairs": {"i2t": i2t.boundary_extra, "t2i": t2i.boundary_extra},
        "rerank_calls": {"i2t": i2t.pairs.cost.calls, "t2i": t2i.pairs.cost.calls},
        "largest_rerank_call": max(i2t.pairs.cost.largest_call, t2i.pairs.cost.largest_call),
        "seconds": {name: round(measured[name], 6) for name in ("encode", "screen", "rerank")},
        "bytes_per_item": round(stage.bytes_per_item, 3),
        "first_stage": stage.kind,
        "extrapolated": _extrapolate(k, measured, corpus.n_images, corpus.n_captions),
    }
    return report


def recompute_cascade(
    evidence: dict[str, Any],
    k: int | str,
    corpus: Any,
    *,
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    map_ks: Sequence[int | None] = DEFAULT_MAP_KS,
    ties: str = "expected",
    map_variant: str = "fico",
    device: str | torch.device | None = "cpu",
    memory_budget: int | str | None = None,
) -> dict[str, Any]:
    """The cascade report at k from evidence alone: FIRST's outputs and the re-ranker's sparse scores.

    The first stage is recomputed, its short lists (with boundary ties) are selected again, and every
    pair they hold is looked up in the evidence (a missing pair is a MissingInputError), so the report
    is what the claimed scores imply, not what a submitter says. This is how a leaderboard would check
    a cascade entry; the board itself does not take cascades yet.
    """
    options = MetricOptions(recall_ks, map_ks, ties, map_variant, memory_budget, progress=False).checked()
    dev = resolve_device(device)
    first = evidence["first"]
    img, txt, info = prepare_embeddings(first["images"], first["texts"], first["measure"], dev, bits=first["bits"])
    c2i = check_mapping(corpus.caption_to_image, corpus.n_images, corpus.n_captions)
    pairs = evidence["pairs"].get(str(k))
    if pairs is None:
        raise OptionError(f"the evidence holds re-ranker scores for k = {', '.join(evidence['pairs'])}, not {k}")
    sources: dict[str, CascadeScores] = {}
    for side, direction in (("image", "i2t"), ("text", "t2i")):
        source = EmbeddingScores(img, txt, first["measure"], side, int(info.get("bits", 0)))
        given = pairs[direction]
        scorer = SparsePairs(
            given["queries"], given["candidates"], given["scores"], source.n_candidates, name=f"{direction} evidence"
        )
        kk = source.n_candidates if k == "N" else min(int(k), source.n_candidates)
        sources[side] = CascadeScores(source, scorer, kk, side, label=f"cascade k={k} {side} queries (evidence)")
    settings = {"measure": f"cascade (exact {first['measure']} first stage, re-ranker evidence)", "cascade_k": str(k)}
    started = time.perf_counter()
    report = evaluate_sources(
        sources["image"], sources["text"], c2i, corpus.labels, options, device=dev, settings=settings, started=started
    ).to_dict()
    report["costs"] = {"rerank_pairs": {"i2t": sources["image"].reranked, "t2i": sources["text"].reranked}}
    return report
