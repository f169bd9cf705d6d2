"""`fico leaderboard build`: verify every submission, drop duplicates, write the static site.

SUBMISSIONS_DIR holds one folder per submission (as `fico submit` writes them). Top-level
regular files (a README) are ignored; anything else that is not a plain folder is rejected.
The site is written to a fresh temporary folder and swapped into place, so a failed build never
leaves half a site; an existing SITE_DIR is only replaced if an earlier build made it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fico_registry.errors import OptionError
from fico_registry.leaderboard import standard
from fico_registry.leaderboard.verify import Verdict, normalised_name, verify_submission
from fico_registry.results.record import write_text_atomic

SITE_MARKER = ".fico-leaderboard"


@dataclass
class BuildResult:
    site_dir: Path
    accepted: list[Verdict] = field(default_factory=list)
    rejected: list[Verdict] = field(default_factory=list)
    pages: dict[str, Path] = field(default_factory=dict)  # corpus content hash -> page


def corpus_slug(corpus: Any) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", f"{corpus.name}-{corpus.split}".lower()).strip("-")[:60] or "corpus"
    return f"{base}-{corpus.content_hash[:8]}"


def build_leaderboard(
    submissions_dir: str | os.PathLike,
    corpora: Sequence[Any],
    site_dir: str | os.PathLike,
    *,
    tolerance: float = standard.FRACTION_TOLERANCE,
    max_file_bytes: int = standard.MAX_FILE_BYTES,
    device: str = "cpu",
    plots: bool = True,
    now: datetime | None = None,
) -> BuildResult:
    """Verify the submissions in `submissions_dir` against `corpora` and write the site to `site_dir`.

    plots=False skips the matplotlib figures (a quicker check of submissions, e.g. in CI).
    """
    source = Path(submissions_dir)
    if not source.is_dir():
        raise OptionError(f"{source} is not a folder of submissions")
    if not corpora:
        raise OptionError("give at least one corpus (--corpus): the ground truth entries are checked against")
    by_hash = {c.content_hash: c for c in corpora}
    target = Path(site_dir)
    _check_target(target, source)

    verdicts = []
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file(follow_symlinks=False):
            continue  # a README or index next to the submission folders
        verdicts.append(
            verify_submission(entry.path, by_hash, tolerance=tolerance, max_file_bytes=max_file_bytes, device=device)
        )
    _drop_duplicates(verdicts)

    result = BuildResult(site_dir=target)
    result.accepted = [v for v in verdicts if v.accepted]
    result.rejected = [v for v in verdicts if not v.accepted]
    built_at = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        pages = _write_site(staging, list(by_hash.values()), result, tolerance, built_at, plots)
        staging.chmod(0o755)  # mkdtemp makes it private; a site is for reading
        (staging / SITE_MARKER).write_text(
            "written by fico leaderboard build; the whole folder is replaced on rebuild\n"
        )
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(staging), str(target))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.pages = {h: target / p.name for h, p in pages.items()}
    return result


def _check_target(target: Path, source: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OptionError(f"{target} exists and is not a folder")
    resolved, src = target.resolve(), source.resolve()
    if resolved == src or src in resolved.parents or resolved in src.parents:
        raise OptionError("the site folder must lie outside the submissions folder (and not contain it)")
    if target.exists() and any(target.iterdir()) and not (target / SITE_MARKER).exists():
        raise OptionError(
            f"{target} is not empty and was not made by `fico leaderboard build`; choose an empty or new folder"
        )


def _drop_duplicates(verdicts: list[Verdict]) -> None:
    """Identical evidence: the earliest submission stays. Same model name on the same corpus:
    the newest stays (a resubmission replaces the old entry). Ties go to the folder name order."""
    accepted = [v for v in verdicts if v.accepted]

    def when(v: Verdict) -> Any:
        assert v.result is not None
        return v.result.date

    first_by_evidence: dict[tuple[str, ...], Verdict] = {}
    for v in sorted(accepted, key=lambda v: (when(v), v.submission)):
        earlier = first_by_evidence.get(v.evidence_digest)
        if earlier is not None:
            v.reject(f"duplicate entry: the same evidence files as submission {earlier.submission}")
        else:
            first_by_evidence[v.evidence_digest] = v
    newest: dict[tuple[str, str], Verdict] = {}
    for v in sorted((v for v in accepted if v.accepted), key=lambda v: (when(v), v.submission), reverse=True):
        assert v.result is not None
        key = (normalised_name(v.result.model.name), v.result.corpus.content_hash)
        later = newest.get(key)
        if later is not None:
            v.reject(
                f"duplicate entry: model {v.result.model.name!r} on this corpus is superseded by the newer "
                f"submission {later.submission}"
            )
        else:
            newest[key] = v


def _entry_doc(verdict: Verdict) -> dict[str, Any]:
    """An accepted entry as the JSON next to its corpus page."""
    assert verdict.result is not None  # accepted verdicts carry the recomputed record
    return {
        "submission": verdict.submission,
        "verified_bytes_per_item": verdict.storage,
        "result": verdict.result.to_dict(),
    }


def _write_site(
    folder: Path, corpora: list[Any], result: BuildResult, tolerance: float, built_at: datetime, plots: bool
) -> dict[str, Path]:
    from fico_registry.leaderboard import site

    rejected_doc = [v.to_rejection() for v in result.rejected]
    write_text_atomic(
        folder / "rejected.json", json.dumps(rejected_doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )
    pages = {}
    for corpus in corpora:
        slug = corpus_slug(corpus)
        entries = [v for v in result.accepted if v.corpus_hash == corpus.content_hash]
        rejected = [v for v in result.rejected if v.corpus_hash == corpus.content_hash]
        doc = {
            "corpus": site.corpus_facts(corpus),
            "protocol": site.protocol_facts(corpus, tolerance),
            "built_at": built_at.isoformat(),
            "entries": [_entry_doc(v) for v in entries],
        }
        write_text_atomic(
            folder / "results" / f"{slug}.json", json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        )
        pages[corpus.content_hash] = site.write_corpus_page(
            folder, slug, corpus, entries, rejected, tolerance, built_at, plots=plots
        )
    site.write_index_page(folder, corpora, result, pages, built_at)
    return pages
