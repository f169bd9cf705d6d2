"""The verified leaderboard: submissions (`fico submit`), verification and the static site.

    make_submission(corpus, name, out_dir, images=..., texts=...)   -> a submission folder
    verify_submission(folder, {corpus.content_hash: corpus})        -> Verdict
    build_leaderboard(submissions_dir, [corpus, ...], site_dir)     -> BuildResult

Importing this package loads numpy and pydantic only; torch, jinja2 and matplotlib load in the
functions that need them.
"""

from __future__ import annotations

from fico_registry.leaderboard.build import BuildResult, build_leaderboard
from fico_registry.leaderboard.submit import make_submission
from fico_registry.leaderboard.verify import Verdict, verify_submission

__all__ = ["BuildResult", "Verdict", "build_leaderboard", "make_submission", "verify_submission"]
