"""Verify one submission folder: safe files, valid schema, known corpus, recomputed metrics.

Nothing in a submission is executed or unpickled. The folder may hold only regular files
(no links, no sub-folders): submission.json and the evidence files it names. Every check that
fails adds a reason; the first failing stage stops the rest, so reasons stay specific.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fico_registry.errors import DataFormatError, FicoError
from fico_registry.leaderboard import evidence as ev
from fico_registry.leaderboard import standard
from fico_registry.results.record import DIRECTIONS, RunResult, read_result

SUBMISSION_FILE = "submission.json"


@dataclass
class Verdict:
    """The outcome for one submission: the entry with recomputed metrics, or why it was refused."""

    submission: str  # folder name (untrusted text: escape it when showing it)
    reasons: list[str] = field(default_factory=list)
    claimed: RunResult | None = None  # as submitted (schema-valid)
    result: RunResult | None = None  # accepted: the claimed record with the RECOMPUTED metrics
    storage: dict[str, float | None] = field(default_factory=dict)  # bytes per item, from the evidence
    evidence_digest: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.result is not None and not self.reasons

    @property
    def corpus_hash(self) -> str | None:
        return None if self.claimed is None else self.claimed.corpus.content_hash

    def reject(self, reason: str) -> Verdict:
        self.reasons.append(reason)
        self.result = None
        return self

    def to_rejection(self) -> dict[str, Any]:
        out: dict[str, Any] = {"submission": self.submission, "reasons": list(self.reasons)}
        if self.claimed is not None:
            out["model"] = self.claimed.model.name
            out["corpus"] = self.claimed.corpus.content_hash
        return out


class _Stop(Exception):
    """Ends verification at the first failing stage (the reason is already recorded)."""


def verify_submission(
    folder: str | os.PathLike,
    corpora: Mapping[str, Any],
    *,
    tolerance: float = standard.FRACTION_TOLERANCE,
    max_file_bytes: int = standard.MAX_FILE_BYTES,
    device: str = "cpu",
) -> Verdict:
    """Check a submission folder against the corpora (content hash -> Corpus) and recompute its metrics."""
    path = Path(folder)
    verdict = Verdict(submission=path.name)
    try:
        names = _list_files(path, verdict)
        claimed = _read_claim(path, names, verdict)
        corpus = _corpus_for(claimed, corpora, verdict)
        arrays, infos = _open_evidence(path, names, claimed, corpus, max_file_bytes, verdict)
        recomputed = _recompute(claimed, corpus, arrays, device, verdict)
        _compare(claimed, recomputed, tolerance, verdict)
    except _Stop:
        return verdict
    evidence = claimed.evidence
    assert evidence is not None
    shapes = {role: info.shape for role, info in infos.items()}
    dtypes = {role: info.dtype for role, info in infos.items()}
    bits = recomputed.settings.bits
    if evidence.cascade is not None and evidence.cascade.first_measure == "hamming":
        bits = evidence.cascade.first_bits or shapes["images"][-1]  # unpacked codes: one value per bit
    verdict.storage = ev.bytes_per_item(evidence.kind, shapes, dtypes, bits)
    verdict.evidence_digest = tuple(sorted(f.sha256 for f in evidence.files().values()))
    verdict.result = claimed.model_copy(update={"metrics": recomputed.metrics})
    return verdict


def _stop(verdict: Verdict, reason: str) -> _Stop:
    verdict.reject(reason)
    return _Stop()


def _list_files(path: Path, verdict: Verdict) -> dict[str, os.DirEntry]:
    if path.is_symlink():
        raise _stop(verdict, "the submission folder is a symbolic link (links are not followed)")
    if not path.is_dir():
        raise _stop(verdict, "not a folder: a submission is a folder holding submission.json and its evidence files")
    entries: dict[str, os.DirEntry] = {}
    problems = []
    with os.scandir(path) as listing:
        for entry in listing:
            if entry.is_symlink():
                problems.append(f"{entry.name} is a symbolic link (not allowed: copy the file in)")
            elif entry.is_dir(follow_symlinks=False):
                problems.append(
                    f"{entry.name}/ is a sub-folder (not allowed: all files lie in the submission folder itself)"
                )
            elif not entry.is_file(follow_symlinks=False):
                problems.append(f"{entry.name} is not a regular file")
            else:
                entries[entry.name] = entry
    if len(entries) > standard.MAX_FILES:
        problems.append(f"{len(entries)} files; a submission holds at most {standard.MAX_FILES}")
    if problems:
        raise _stop(verdict, "; ".join(sorted(problems)))
    if SUBMISSION_FILE not in entries:
        raise _stop(verdict, f"no {SUBMISSION_FILE} (create the folder with `fico submit`)")
    return entries


def _read_claim(path: Path, names: Mapping[str, os.DirEntry], verdict: Verdict) -> RunResult:
    try:
        claimed = read_result(path / SUBMISSION_FILE, max_bytes=standard.MAX_JSON_BYTES)
    except DataFormatError as exc:
        raise _stop(verdict, f"schema: {_strip_path(str(exc), path)}") from None
    if claimed.evidence is None:
        raise _stop(verdict, "schema: no evidence block; the board recomputes every number from embeddings or scores")
    verdict.claimed = claimed
    wanted = {f.file for f in claimed.evidence.files().values()}
    extra = sorted(set(names) - wanted - {SUBMISSION_FILE})
    missing = sorted(wanted - set(names))
    problems = [
        f"unexpected file {name} ({ev.describe_file(path / name)}); "
        f"a submission holds {SUBMISSION_FILE} and its evidence files only"
        for name in extra
    ]
    problems += [f"evidence file {name} is missing" for name in missing]
    if problems:
        raise _stop(verdict, "; ".join(problems))
    return claimed


def _strip_path(message: str, folder: Path) -> str:
    # the reason is published: keep the builder's local paths out of it
    return message.replace(str(folder / SUBMISSION_FILE), SUBMISSION_FILE).replace(str(folder), ".")


def _corpus_for(claimed: RunResult, corpora: Mapping[str, Any], verdict: Verdict) -> Any:
    info = claimed.corpus
    corpus = corpora.get(info.content_hash)
    if corpus is None:
        known = ", ".join(f"{c.name}/{c.split} ({h[:12]})" for h, c in corpora.items()) or "none"
        raise _stop(
            verdict,
            f"unknown corpus {info.dataset}/{info.split} (content hash {info.content_hash[:12]}); "
            f"this board has: {known}. Evaluate on the published corpus files, unmodified",
        )
    has_labels = corpus.labels is not None
    problems = standard.protocol_differences(claimed.settings, has_labels)
    if problems:
        raise _stop(
            verdict,
            "non-standard settings: " + "; ".join(problems) + ". Use `fico submit`, which applies the board's protocol",
        )
    return corpus


def _open_evidence(
    path: Path, names: Mapping[str, os.DirEntry], claimed: RunResult, corpus: Any, max_file_bytes: int, verdict: Verdict
) -> tuple[dict[str, Any], dict[str, ev.ArrayInfo]]:
    evidence = claimed.evidence
    assert evidence is not None
    infos: dict[str, ev.ArrayInfo] = {}
    problems = []
    for role, declared in evidence.files().items():
        file_path = path / declared.file
        size = names[declared.file].stat(follow_symlinks=False).st_size
        if size > max_file_bytes:
            problems.append(f"{declared.file} is {size} bytes, over the limit of {max_file_bytes} per file")
            continue
        if size != declared.bytes:
            problems.append(f"{declared.file} has {size} bytes but submission.json declares {declared.bytes}")
            continue
        try:
            _tensor, info = ev.inspect(file_path, declared.format, declared.tensor)
        except ev.EvidenceError as exc:
            problems.append(str(exc))
            continue
        if ev.sha256_file(file_path) != declared.sha256:
            problems.append(
                f"{declared.file}: sha256 does not match submission.json (the file was changed after `fico submit`)"
            )
            continue
        if list(info.shape) != list(declared.shape) or str(info.dtype.newbyteorder("=")) != _plain_dtype(
            declared.dtype
        ):
            problems.append(
                f"{declared.file}: holds {info.dtype} {list(info.shape)} but submission.json declares "
                f"{declared.dtype} {declared.shape}"
            )
            continue
        infos[role] = info
    if problems:
        raise _stop(verdict, "; ".join(problems))
    measure = evidence.cascade.first_measure if evidence.cascade is not None else claimed.settings.measure
    try:
        shapes = {r: i.shape for r, i in infos.items()}
        ev.check_shapes(evidence.kind, shapes, corpus.n_images, corpus.n_captions, measure)
    except FicoError as exc:
        raise _stop(verdict, f"evidence shape does not match the corpus: {exc}") from None
    arrays = {role: ev.open_array(path / evidence.files()[role].file, info) for role, info in infos.items()}
    return arrays, infos


def _plain_dtype(name: str) -> str:
    import numpy as np

    try:
        return str(np.dtype(name).newbyteorder("="))
    except TypeError:
        return name


def _recompute(claimed: RunResult, corpus: Any, arrays: dict[str, Any], device: str, verdict: Verdict) -> RunResult:
    from fico_registry.results.record import from_report

    try:
        if claimed.evidence is not None and claimed.evidence.cascade is not None:
            from fico_registry.leaderboard.cascade_entry import recompute_entry

            report = recompute_entry(arrays, claimed.evidence.cascade, corpus, device)
        else:
            kind = claimed.evidence.kind if claimed.evidence is not None else "similarity"
            report = standard.evaluate_evidence(
                kind, arrays, corpus, measure=claimed.settings.measure, bits=claimed.settings.bits, device=device
            )
    except FicoError as exc:
        raise _stop(verdict, f"the evidence cannot be evaluated: {exc}") from None
    except Exception as exc:  # one broken submission must not stop the board from building
        raise _stop(verdict, f"the evidence cannot be evaluated: {type(exc).__name__}: {exc}") from None
    return from_report(report, model={"name": claimed.model.name}, corpus=corpus, date=claimed.date, packages={})


def _compare(claimed: RunResult, recomputed: RunResult, tolerance: float, verdict: Verdict) -> None:
    differences = metric_differences(claimed, recomputed, tolerance)
    if differences:
        shown = "; ".join(differences[:6]) + (f"; ... {len(differences) - 6} more" if len(differences) > 6 else "")
        raise _stop(verdict, f"claimed metrics differ from the recomputed ones beyond tolerance {tolerance:g}: {shown}")


def metric_differences(claimed: RunResult, recomputed: RunResult, tolerance: float) -> list[str]:
    """Every claimed metric that is not the recomputed one (within tolerance), as 'i2t R@1: claimed x, recomputed y'."""
    out = []
    for direction in DIRECTIONS:
        pairs: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = [
            (claimed.metrics.instance[direction], recomputed.metrics.instance[direction])
        ]
        if (claimed.metrics.category is None) != (recomputed.metrics.category is None):
            out.append(
                f"{direction} category metrics: claimed {'none' if claimed.metrics.category is None else 'some'}, "
                f"recomputed {'none' if recomputed.metrics.category is None else 'some'}"
            )
        elif claimed.metrics.category is not None and recomputed.metrics.category is not None:
            pairs.append((claimed.metrics.category[direction], recomputed.metrics.category[direction]))
        pairs += _judged_pairs(claimed, recomputed, direction, out)
        for said, truth in pairs:
            for key in sorted(set(said) | set(truth)):
                if not _close(key, said.get(key), truth.get(key), tolerance):
                    out.append(f"{direction} {key}: claimed {_show(said.get(key))}, recomputed {_show(truth.get(key))}")
    return out


def _judged_pairs(claimed: RunResult, recomputed: RunResult, direction: str, out: list[str]) -> list[tuple[dict, dict]]:
    """Claimed judged metrics beside the recomputed ones, keys prefixed by the set's name. A claim
    without judged metrics is not compared (older results): the board shows the recomputed ones."""
    said_all, truth_all = claimed.metrics.judged or {}, recomputed.metrics.judged or {}
    pairs = []
    for name, entry in said_all.items():
        if name not in truth_all:
            out.append(f"judged {name!r}: claimed, but this corpus carries no such judgments")
            continue
        said: Any = entry.get(direction) or {}  # type: ignore[call-overload]
        truth: Any = truth_all[name].get(direction) or {}  # type: ignore[call-overload]
        pairs.append(({f"{name} {k}": v for k, v in said.items()}, {f"{name} {k}": v for k, v in truth.items()}))
    return pairs


def _close(key: str, said: Any, truth: Any, tolerance: float) -> bool:
    if said is None or truth is None:
        return said is None and truth is None
    if isinstance(said, str) or isinstance(truth, str):
        return said == truth
    if key.endswith("judged_queries"):
        return int(said) == int(truth)
    if isinstance(said, list) or isinstance(truth, list):
        if not (isinstance(said, list) and isinstance(truth, list) and len(said) == len(truth)):
            return False
        return all(_close(key, a, b, tolerance) for a, b in zip(said, truth, strict=True))
    if key == "PR11_queries":
        return int(said) == int(truth)
    if key in ("MedR", "MeanR"):
        return math.isclose(float(said), float(truth), rel_tol=standard.RANK_RELATIVE_TOLERANCE, abs_tol=1e-9)
    return abs(float(said) - float(truth)) <= tolerance


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


_NAME_SPACE = re.compile(r"\s+")


def normalised_name(name: str) -> str:
    """Model names compared for duplicates: case and runs of white space do not count."""
    return _NAME_SPACE.sub(" ", name).strip().casefold()
