"""The one evaluator: embeddings, similarity matrices or a model on a corpus in, a Report out.

Each entry point checks its inputs (evaluator.checks), builds the i2t and t2i score sources and
hands them to evaluate_sources; evaluate(model, corpus) first runs the model (evaluator.model_runs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from fico_registry.errors import OptionError, ShapeError
from fico_registry.evaluator import judged_pass
from fico_registry.evaluator.checks import check_mapping, check_matrix, n_items
from fico_registry.evaluator.evaluate_sources import evaluate_sources
from fico_registry.evaluator.options import DEFAULT_MAP_KS, DEFAULT_RECALL_KS, MetricOptions
from fico_registry.evaluator.report import Report
from fico_registry.evaluator.seam import evaluation_seam
from fico_registry.evaluator.similarity import check_measure, prepare_embeddings
from fico_registry.evaluator.sources import EmbeddingScores, MatrixScores, ScoreSource, unique_candidates
from fico_registry.runtime.devices import resolve_device

__all__ = [
    "DEFAULT_MAP_KS",
    "DEFAULT_NDCG_KS",
    "DEFAULT_RECALL_KS",
    "evaluate",
    "evaluate_embeddings",
    "evaluate_similarity",
]

DEFAULT_NDCG_KS = judged_pass.DEFAULT_NDCG_KS


def evaluate_embeddings(
    images: Any,
    texts: Any,
    caption_to_image: Any,
    labels: Any = None,
    measure: str = "cosine",
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    map_ks: Sequence[int | None] = DEFAULT_MAP_KS,
    ties: str = "expected",
    map_variant: str = "fico",
    device: str | torch.device | None = "auto",
    memory_budget: int | str | None = None,
    *,
    bits: int | None = None,
    progress: bool | None = None,
    judgments: Any = None,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    gain: str = "linear",
) -> Report:
    """Evaluate image and text embeddings (or hash codes) with the full FiCo-ITR protocol.

    images (n_images, d) and texts (n_texts, d): float arrays, or with measure="hamming" codes
    in {0,1} / {-1,+1} / packed uint8 bits (`bits` disambiguates uint8 input); with
    measure="maxsim" images are (n_images, n_vectors, d). caption_to_image[j] is the image of
    caption j. labels (n_images, n_classes) multi-hot enables category-level mAP and PR11.
    judgments: name -> JudgmentSet or (i2t, t2i) pair of Judgments adds report.judged (R@K,
    R-P, mAP@R, NDCG@K / MRR@K for ndcg_ks, with `gain` "linear" or "exponential").
    """
    started = time.perf_counter()
    _join_torchrun(device)
    dev = resolve_device(device)
    check_measure(measure)
    options = MetricOptions(recall_ks, map_ks, ties, map_variant, memory_budget, progress, ndcg_ks, gain).checked()
    seam = evaluation_seam(dev)
    n_img, n_txt = n_items(images), n_items(texts)
    if seam.follows_shard(n_img, n_txt, labels is not None, options.map_ks, map_variant):
        # torchrun: each rank prepares only its shard of each side (memory follows the shard)
        i2t, t2i, info = seam.embedding_shards(images, texts, n_img, n_txt, measure, dev, bits)
        c2i = check_mapping(caption_to_image, n_img, n_txt)
    else:
        img, txt, info = prepare_embeddings(images, texts, measure, dev, bits=bits)
        c2i = check_mapping(caption_to_image, img.shape[0], txt.shape[0])
        n_bits = info.get("bits", 0)
        i2t = unique_candidates(EmbeddingScores(img, txt, measure, "image", n_bits))
        t2i = unique_candidates(EmbeddingScores(img, txt, measure, "text", n_bits))
    settings = {"measure": measure, **info}
    return evaluate_sources(
        i2t,
        t2i,
        c2i,
        labels,
        options,
        device=dev,
        settings=settings,
        started=started,
        sharded=seam,
        judgments=judgments,
    )


def evaluate_similarity(
    i2t: Any,
    caption_to_image: Any,
    t2i: Any = None,
    labels: Any = None,
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    map_ks: Sequence[int | None] = DEFAULT_MAP_KS,
    ties: str = "expected",
    map_variant: str = "fico",
    device: str | torch.device | None = "auto",
    memory_budget: int | str | None = None,
    *,
    progress: bool | None = None,
    judgments: Any = None,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    gain: str = "linear",
) -> Report:
    """Evaluate precomputed scores: i2t (n_images, n_texts), optional t2i (n_texts, n_images).

    Models whose two directions differ (fusion re-rank) pass both; otherwise t2i = i2t.T.
    Higher scores mean more similar. Matrices may be numpy memmaps: rows are read in blocks.
    judgments: as in evaluate_embeddings (t2i judgments are scored on the t2i matrix when given).
    """
    started = time.perf_counter()
    _join_torchrun(device)
    dev = resolve_device(device)
    options = MetricOptions(recall_ks, map_ks, ties, map_variant, memory_budget, progress, ndcg_ks, gain).checked()
    i2t_mat = check_matrix(i2t, "i2t")
    n_images, n_texts = i2t_mat.shape
    c2i = check_mapping(caption_to_image, n_images, n_texts)
    if t2i is None:
        t2i_source: ScoreSource = MatrixScores(i2t_mat, transpose=True, device=dev, name="i2t")
    else:
        t2i_mat = check_matrix(t2i, "t2i")
        if tuple(t2i_mat.shape) != (n_texts, n_images):
            raise ShapeError(
                f"t2i must be (n_texts, n_images) = {(n_texts, n_images)}, got {tuple(t2i_mat.shape)}; "
                "pass the text-to-image matrix itself, not the i2t one"
            )
        t2i_source = MatrixScores(t2i_mat, device=dev, name="t2i")
    i2t_source = MatrixScores(i2t_mat, device=dev, name="i2t")
    settings = {
        "measure": "precomputed",
        "input_dtype": str(i2t_mat.dtype).replace("torch.", ""),
        "separate_t2i": t2i is not None,
    }
    return evaluate_sources(
        i2t_source,
        t2i_source,
        c2i,
        labels,
        options,
        device=dev,
        settings=settings,
        started=started,
        judgments=judgments,
    )


def _join_torchrun(device: Any) -> None:
    """Under torchrun (WORLD_SIZE > 1) join the process group first: it picks this rank's GPU."""
    from fico_registry.runtime.distributed import init_if_launched

    init_if_launched(device)


def evaluate(
    model: Any,
    corpus: Any,
    *,
    config: str | dict[str, Any] = "default",
    checkpoint: Any = None,
    device: str | torch.device | None = "auto",
    batch_size: int = 32,
    cache: Any = True,
    rerank_k: int | None = None,
    outside_topk: str = "keep",
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    map_ks: Sequence[int | None] = DEFAULT_MAP_KS,
    ties: str = "expected",
    map_variant: str = "fico",
    memory_budget: int | str | None = None,
    progress: bool | None = None,
    keep_outputs: dict[str, Any] | None = None,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    gain: str = "linear",
) -> Report:
    """Evaluate a model (a loaded Model or a registered name) on a Corpus, end to end.

    Inputs come from the corpus as the model card declares them (image files, captions,
    attached features such as "regions", or a registered feature pipeline); outputs go through
    the embedding cache (cache=True: $FICO_HOME/embeddings; a path or EmbeddingCache; False: off).
    Similarity models are scored by the engine: cross-attention over all pairs, or fusion
    re-rank of each query's first-stage top-k (rerank_k, default the card's), with
    outside_topk="keep" (first-stage order below the re-ranked ones; mAP@N defined) or
    "exclude" (the paper's convention: mAP@N and PR11 reported as null).
    keep_outputs: a dict that receives the encoder outputs ("images", "texts") and, for
    cross-attention models scored in one process, the (n_images, n_texts) matrix ("i2t").
    The corpus' own judgments (corpus.judgments, e.g. ECCV Caption / CxC) add report.judged.
    """
    from fico_registry.evaluator import model_runs
    from fico_registry.models.loading import Model, load_model
    from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention

    started = time.perf_counter()
    if outside_topk not in ("keep", "exclude"):
        raise OptionError(f"outside_topk must be 'keep' or 'exclude', got {outside_topk!r}")
    # checked before loading and encoding, which can take hours: a bad K is refused at once
    options = MetricOptions(recall_ks, map_ks, ties, map_variant, memory_budget, progress, ndcg_ks, gain).checked()
    seam = evaluation_seam(device)  # joins torchrun's group before the model picks its GPU
    seam.refuse_judgments(getattr(corpus, "judgments", None))  # sharded: before any encoding
    if not isinstance(model, Model):
        model = load_model(
            model, config=config, checkpoint=checkpoint, device=None if device == "auto" else str(device)
        )
    dev = resolve_device(model.device if device == "auto" else device)
    spec = model.spec
    encoded = model_runs.encode_corpus(
        model, corpus, dev, model_runs.embedding_store(cache), seam, batch_size, progress
    )

    outputs = img_out, txt_out = encoded["image"].outputs, encoded["text"].outputs
    if keep_outputs is not None:
        keep_outputs.update(images=img_out, texts=txt_out)
    costs: dict[str, Any] = {"encode": {"images": encoded["image"].cost(), "texts": encoded["text"].cost()}}
    cost = None
    if spec.output in (OutputKind.CONTINUOUS, OutputKind.BINARY):
        report = model_runs.evaluate_embedding_model(model, corpus, outputs, dev, options)
    elif spec.query_time_attention is QueryTimeAttention.CROSS_ATTENTION:
        report, cost = model_runs.evaluate_cross_attention(
            model, corpus, outputs, dev, seam, started, keep_outputs, options
        )
        costs["query_time"] = cost.to_dict("cross-attention")
    else:
        report, cost = model_runs.evaluate_fusion_rerank(
            model, corpus, outputs, dev, rerank_k, outside_topk, started, options
        )
        costs["query_time"] = cost.to_dict("fusion-rerank")
    report.settings["batch_size"] = batch_size
    report.settings["seconds"] = round(time.perf_counter() - started, 4)
    report.model = model.provenance()
    report.corpus = {
        "name": corpus.name,
        "split": corpus.split,
        "content_hash": corpus.content_hash,
        "n_images": corpus.n_images,
        "n_texts": corpus.n_captions,
        "n_classes": None if corpus.labels is None else int(corpus.labels.shape[1]),
        "duplication": corpus.duplication,
    }
    seam.add_evaluate_costs(report, costs, encoded, cost)
    return report
