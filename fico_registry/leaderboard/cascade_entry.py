"""Cascade entries on the leaderboard: FIRST's outputs plus RERANK's sparse scores, recomputed.

The evidence of a cascade at one k (evidence kind "cascade"): `images` / `texts`, FIRST's outputs
(as an embeddings entry's, compared by `cascade.first_measure`), and per direction
`{i2t,t2i}_pairs` (P, 2) integer rows (query, candidate) with `{i2t,t2i}_scores` (P,) floats: the
re-ranker's score of each re-ranked pair. The board recomputes the first stage, selects every
query's short list again (the boundary tie group at k included) and looks each selected pair up
(fico_registry.studies.cascade.recompute_cascade): a selected pair the evidence lacks, a pair
outside the short lists, or a score that changes the order is a rejection that names it. The
re-ranker is never run: its scores are taken as given, as a similarity entry's matrix is.

`fico evaluate-cascade ... --save-evidence DIR` writes DIR (save_cascade_run): cascade.json (the
models, FIRST's measure and bits, the ks, the corpus hash, the re-rank costs per k),
first_images.npy, first_texts.npy and k{K}_{i2t,t2i}_{pairs,scores}.npy; `fico submit
--cascade-from DIR --k K` turns one k of it into a submission folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import DataFormatError, OptionError, ShapeError

RUN_FORMAT = "fico-cascade-evidence"
RUN_MANIFEST = "cascade.json"
DIRECTIONS = ("i2t", "t2i")


@dataclass
class CascadeRun:
    """One k of a saved cascade run: what make_cascade_submission needs."""

    arrays: dict[str, np.ndarray]  # the evidence roles: images, texts, {i2t,t2i}_{pairs,scores}
    info: dict[str, Any]  # CascadeInfo fields: first, rerank, k, first_measure, first_bits
    costs: dict[str, Any] | None  # the run's costs at this k (pairs, calls, seconds)


def check_cascade_shapes(shapes: dict[str, tuple[int, ...]], n_images: int, n_texts: int, measure: str | None) -> None:
    """FIRST's outputs as embeddings evidence; each direction's pairs (P, 2) beside P scores."""
    from fico_registry.leaderboard.evidence import check_shapes

    check_shapes("embeddings", {"images": shapes["images"], "texts": shapes["texts"]}, n_images, n_texts, measure)
    for direction in DIRECTIONS:
        pairs, scores = shapes[f"{direction}_pairs"], shapes[f"{direction}_scores"]
        if len(pairs) != 2 or pairs[1] != 2:
            raise ShapeError(f"{direction}_pairs must be (P, 2) rows of (query, candidate), got {list(pairs)}")
        if len(scores) != 1 or scores[0] != pairs[0]:
            raise ShapeError(
                f"{direction}_scores must be ({pairs[0]},): one score per row of {direction}_pairs, got {list(scores)}"
            )


def _checked_pairs(direction: str, pairs: np.ndarray, scores: np.ndarray, n_queries: int, n_candidates: int) -> None:
    if pairs.dtype.kind not in "iu":
        raise DataFormatError(f"{direction}_pairs must hold integers (query, candidate), got {pairs.dtype}")
    if scores.dtype.kind != "f":
        raise DataFormatError(f"{direction}_scores must hold floats, got {scores.dtype}")
    for column, name, limit in ((0, "query", n_queries), (1, "candidate", n_candidates)):
        bad = np.flatnonzero((pairs[:, column] < 0) | (pairs[:, column] >= limit))
        if len(bad):
            row = int(bad[0])
            raise DataFormatError(
                f"{direction}_pairs row {row}: {name} {int(pairs[row, column])} is outside 0..{limit - 1} "
                f"({len(bad)} such rows)"
            )


def recompute_entry(arrays: dict[str, Any], info: Any, corpus: Any, device: str = "cpu") -> Any:
    """The board's Report of a cascade entry, from its evidence alone (standard protocol).

    `info` is a CascadeInfo (or a dict of its fields). Raises a FicoError naming the first problem:
    a pair out of range, a selected pair with no score, a pair no short list holds.
    """
    from fico_registry.evaluator.report import Report
    from fico_registry.leaderboard import standard
    from fico_registry.studies.cascade import recompute_cascade

    fields = info if isinstance(info, dict) else info.model_dump()
    sizes = {"i2t": (corpus.n_images, corpus.n_captions), "t2i": (corpus.n_captions, corpus.n_images)}
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for direction in DIRECTIONS:
        rows, scores = np.asarray(arrays[f"{direction}_pairs"]), np.asarray(arrays[f"{direction}_scores"])
        _checked_pairs(direction, rows, scores, *sizes[direction])
        pairs[direction] = {"queries": rows[:, 0].astype(np.int64), "candidates": rows[:, 1].astype(np.int64),
                            "scores": scores.astype(np.float64)}  # fmt: skip
    k = fields["k"]
    evidence = {
        "first": {"images": np.asarray(arrays["images"]), "texts": np.asarray(arrays["texts"]),
                  "measure": fields["first_measure"], "bits": fields.get("first_bits")},
        "pairs": {str(k): pairs},
    }  # fmt: skip
    protocol = standard.evaluator_kwargs(corpus.labels is not None)
    report = recompute_cascade(evidence, k, corpus, device=device, **protocol)
    for direction in DIRECTIONS:
        given, selected = len(pairs[direction]["scores"]), report["costs"]["rerank_pairs"][direction]
        if given != selected:  # every selected pair was found, and no pair is given twice: the rest lie outside
            raise DataFormatError(
                f"{direction}: the evidence holds {given} re-ranker scores but the first stage selects "
                f"{selected} pairs at k = {k}; the {given - selected} others lie outside every query's short list "
                "(submit exactly the re-ranked pairs)"
            )
    report["settings"] = {**report["settings"], "measure": "cascade"}
    return Report.from_dict(report)


def _query_time(costs: dict[str, Any] | None) -> dict[str, Any] | None:
    if not costs:
        return None
    pairs, calls = costs.get("rerank_pairs") or {}, costs.get("rerank_calls") or {}
    seconds = (costs.get("seconds") or {}).get("rerank")
    return {"kind": "cascade re-rank", "pairs": int(sum(pairs.values())) if pairs else None,
            "calls": int(sum(calls.values())) if calls else None, "seconds": seconds}  # fmt: skip


def make_cascade_submission(
    corpus: Any,
    out_dir: str | os.PathLike,
    run: CascadeRun,
    *,
    model_name: str | None = None,
    model: dict[str, Any] | None = None,
    submitter: str | None = None,
    evidence_format: str = "npy",
    device: str = "cpu",
) -> Any:
    """Write a cascade submission folder (submission.json + 6 evidence files) from one k of a run.

    The claimed metrics are recomputed here from the evidence exactly as the board will; the name
    shown defaults to 'FIRST -> RERANK @k'.
    """
    from fico_registry.leaderboard import evidence as ev
    from fico_registry.leaderboard.verify import SUBMISSION_FILE
    from fico_registry.results.record import CascadeInfo, Evidence, RunResult, from_report, read_result, write_result

    if evidence_format not in ("npy", "safetensors"):
        raise OptionError(f"evidence format must be 'npy' or 'safetensors', got {evidence_format!r}")
    folder = Path(out_dir)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OptionError(f"{folder} exists and is not an empty folder; choose a new output folder")
    info = CascadeInfo.model_validate(run.info)
    arrays = {role: ev.as_numeric_array(a, role) for role, a in run.arrays.items()}
    shapes = {role: array.shape for role, array in arrays.items()}
    check_cascade_shapes(shapes, corpus.n_images, corpus.n_captions, info.first_measure)
    report = recompute_entry(arrays, info, corpus, device)
    fields = {"family": _family(info.rerank), **(model or {})}
    fields = {key: value for key, value in fields.items() if value is not None}
    result = from_report(report, model={**fields, "name": model_name or info.label(), "output": "cascade"},
                         corpus=corpus, submitter=submitter)  # fmt: skip
    costs = {**result.costs.model_dump(), "query_time": _query_time(run.costs)}
    folder.mkdir(parents=True, exist_ok=True)
    files = {role: ev.write_evidence(array, folder, role, evidence_format) for role, array in arrays.items()}
    document = {**result.model_dump(), "costs": costs,
                "evidence": Evidence(kind="cascade", cascade=info, **files).model_dump()}  # fmt: skip
    write_result(RunResult.model_validate(document), folder / SUBMISSION_FILE)
    return read_result(folder / SUBMISSION_FILE)


def _family(name: str) -> str | None:
    from fico_registry.leaderboard.submit import _registered_family

    return _registered_family(name)


# -- the saved run (fico evaluate-cascade --save-evidence) -------------------------------------
def save_cascade_run(doc: dict[str, Any], corpus: Any, folder: str | os.PathLike) -> Path:
    """Write the evidence of an evaluate_cascade(..., keep_evidence=True) document into a new folder."""
    from fico_registry.leaderboard.evidence import as_numeric_array
    from fico_registry.results.record import write_text_atomic

    target = Path(folder)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OptionError(f"{target} exists and is not an empty folder; choose a new folder for the evidence")
    evidence = doc.get("evidence")
    if evidence is None:
        raise OptionError("the cascade was run without keep_evidence=True: there is no evidence to save")
    target.mkdir(parents=True, exist_ok=True)
    first = evidence["first"]
    arrays = {"first_images": first["images"], "first_texts": first["texts"]}
    for k, directions in evidence["pairs"].items():
        for direction, given in directions.items():
            rows = np.stack([given["queries"], given["candidates"]], axis=1)
            arrays[f"k{k}_{direction}_pairs"] = rows.astype(np.int64)
            arrays[f"k{k}_{direction}_scores"] = np.asarray(given["scores"], dtype=np.float64)
    for name, array in arrays.items():
        np.save(target / f"{name}.npy", np.ascontiguousarray(as_numeric_array(array, name)), allow_pickle=False)
    settings = doc["settings"]
    manifest = {
        "format": RUN_FORMAT,
        "first": settings["first"], "rerank": settings["rerank"], "ks": list(evidence["pairs"]),
        "first_measure": first["measure"], "first_bits": first["bits"],
        "corpus": {"name": corpus.name, "split": corpus.split, "content_hash": corpus.content_hash},
        "costs": {k: doc["by_k"][k]["costs"] for k in evidence["pairs"]},
    }  # fmt: skip
    write_text_atomic(target / RUN_MANIFEST, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return target


def read_cascade_run(folder: str | os.PathLike, k: int | str, corpus: Any) -> CascadeRun:
    """One k of a folder written by save_cascade_run, checked against `corpus`."""
    from fico_registry.results.record import loads_strict

    source = Path(folder)
    path = source / RUN_MANIFEST
    if not path.is_file():
        raise DataFormatError(
            f"{source}: no {RUN_MANIFEST}; write the folder with `fico evaluate-cascade ... --save-evidence DIR`"
        )
    manifest = loads_strict(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
        raise DataFormatError(f"{path}: not a saved cascade run (format {RUN_FORMAT!r})")
    if manifest["corpus"]["content_hash"] != corpus.content_hash:
        raise OptionError(
            f"{source} was evaluated on corpus {manifest['corpus']['name']}/{manifest['corpus']['split']} "
            f"({manifest['corpus']['content_hash'][:12]}), not on {corpus.name}/{corpus.split} ({corpus.short_hash})"
        )
    key = "N" if str(k).upper() == "N" else str(k)
    if key not in manifest["ks"]:
        held = ", ".join(manifest["ks"])
        raise OptionError(f"{source} holds the cascade at k = {held}; choose one of them with --k, not {k}")

    def load(name: str) -> np.ndarray:
        return np.load(source / f"{name}.npy", allow_pickle=False)

    arrays = {"images": load("first_images"), "texts": load("first_texts")}
    for direction in DIRECTIONS:
        arrays[f"{direction}_pairs"] = load(f"k{key}_{direction}_pairs")
        arrays[f"{direction}_scores"] = load(f"k{key}_{direction}_scores")
    info = {"first": manifest["first"], "rerank": manifest["rerank"], "k": key if key == "N" else int(key),
            "first_measure": manifest["first_measure"], "first_bits": manifest["first_bits"]}  # fmt: skip
    return CascadeRun(arrays, info, (manifest.get("costs") or {}).get(key))
