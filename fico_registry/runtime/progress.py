"""The one progress bar of fico: rich, on stderr, shared by work running in parallel threads."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

_bar_lock = threading.Lock()
_shared_bar: list[Any] = []  # [Progress, users]: one live display shared by concurrent tasks


class progress_bar:
    """A context manager yielding `advance(n=1)`.

    enabled: None shows the bar on a terminal only; True shows it even when stderr is not a
    terminal; False never. FICO_NO_PROGRESS hides every bar. Tasks started while another bar is
    live (e.g. i2t and t2i ranked in two threads) join the same display: rich allows only one.
    `completed` starts the bar part-way (resumed work).
    """

    def __init__(self, enabled: bool | None, label: str, total: int, completed: int = 0) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = bool(enabled) and not os.environ.get("FICO_NO_PROGRESS") and total > completed
        self.label, self.total, self.completed = label, total, completed

    def __enter__(self) -> Callable[..., None]:
        if not self.enabled:
            return _ignore
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with _bar_lock:
            if not _shared_bar:
                columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
                bar = Progress(*columns, transient=True)
                bar.__enter__()
                _shared_bar[:] = [bar, 0]
            _shared_bar[1] += 1
            bar = _shared_bar[0]
            task = bar.add_task(self.label, total=self.total, completed=self.completed)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        return advance

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        with _bar_lock:
            _shared_bar[1] -= 1
            if _shared_bar[1] == 0:
                bar = _shared_bar[0]
                _shared_bar.clear()
                bar.__exit__(*exc)


def _ignore(n: int = 1) -> None:
    return None
