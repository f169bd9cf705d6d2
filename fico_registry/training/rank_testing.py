"""Test helpers for the recipes' tests: synthetic splits to train on, and for their torch.distributed
tests, gloo ranks spawned on CPU as torchrun would, and what a rank writes.

Used by the plugins' training tests (a rank that is not 0 must write nothing); not by training itself.
Plugins reach it through the training kit: `from fico_registry.plugin_api.training import rank_testing`.
A recipe's 2-rank test usually needs one call: `train_on_ranks(runs, watch=folder)` trains each run
on two ranks with the recipe registered for its model and returns what every rank wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fico_registry.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from fico_registry.data.corpus import Corpus

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def synthetic_splits(root: str | os.PathLike, *, seed: int = 0, **n_images: int) -> dict[str, Corpus]:
    """Synthetic corpora to train and select on, one a split (`train=24, val=8`), under `root`/<split>."""
    from fico_registry.data import synthetic

    return {
        split: synthetic(n_images=n, split=split, seed=seed, root=Path(root, split)) for split, n in n_images.items()
    }


def check_refuses_ranks_without_group(train: Callable[..., Any], run: Mapping[str, Any]) -> None:
    """`train(**run)` under torchrun's WORLD_SIZE=2 but without a process group (a recipe called outside
    `fico train`) must raise ConfigError before it writes anything into run["out"]."""
    from unittest import mock

    out = Path(run["out"])
    with mock.patch.dict(os.environ, {"WORLD_SIZE": "2"}):
        try:
            train(**run)
        except ConfigError as exc:
            assert "no torch.distributed process group" in str(exc), exc
        else:
            raise AssertionError("WORLD_SIZE=2 without a process group was not refused")
    assert not out.exists() or not any(out.iterdir()), f"{out} was written before the refusal"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_group(rank: int, world: int, port: int) -> str:
    """What torchrun's environment and `fico train` give a rank: the variables, then the gloo group;
    returns the rank's device ("cpu")."""
    from fico_registry.runtime import distributed as _dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    return _dist.init_process_group("cpu")


@contextlib.contextmanager
def rank_group(rank: int, world: int, port: int) -> Iterator[str]:
    """Inside: this process is rank `rank` of a gloo group (yields its device); the group is left on exit."""
    from fico_registry.runtime import distributed as _dist

    device = join_group(rank, world, port)
    try:
        yield device
    finally:
        _dist.destroy()


def spawn_ranks(worker: Callable[..., Any], *args: Any, world: int = 2) -> None:
    """Run `worker(rank, world, port, *args)` in `world` fresh processes, one a rank; raises if one fails.

    `worker` and `args` are pickled into the processes: a module-level function and plain data.
    """
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(world, free_port(), *args), nprocs=world, join=True)


def train_on_rank(
    rank: int,
    world: int,
    port: int,
    train: Callable[..., Any],
    runs: Sequence[Mapping[str, Any]],
    *,
    watch: str | os.PathLike,
) -> list[str]:
    """In a spawned rank: join the group, call `train(**run, device=...)` for each run in turn (a later
    run into the same `out` resumes), leave the group; returns what this rank wrote under `watch`
    (`watch_writes`; rank 0, the one that should write, is not watched and returns [])."""
    with rank_group(rank, world, port) as device:
        writes = watch_writes(watch) if rank else []
        for run in runs:
            train(**run, device=device)
    return writes


def train_on_ranks(runs: Sequence[Mapping[str, Any]], *, watch: str | os.PathLike, world: int = 2) -> list[list[str]]:
    """`fico train` under torchrun, on `world` gloo ranks on CPU: each rank trains every run in turn
    (`train(**run, device=...)` with the recipe registered for `run["model"]`; a later run into the
    same `out` resumes). Returns what each rank wrote under `watch` (`watch_writes`; rank 0 is not
    watched: []). `runs` are pickled into the rank processes: plain data, corpora included."""
    with tempfile.TemporaryDirectory() as record:
        spawn_ranks(_recipe_rank, [dict(run) for run in runs], os.fspath(watch), record, world=world)
        return [json.loads(Path(record, f"rank{r}.json").read_text()) for r in range(world)]


def _recipe_rank(rank: int, world: int, port: int, runs: list[dict[str, Any]], watch: str, record: str) -> None:
    """One rank of `train_on_ranks` (spawned); what it wrote goes to `record`/rank{rank}.json."""
    import torch

    from fico_registry.plugin_api.registry import get_trainer_spec, resolve_callable

    def registered_recipe(**run: Any) -> Any:  # what `fico train MODEL` calls
        return resolve_callable(get_trainer_spec(run["model"]).factory)(**run)

    torch.set_num_threads(1)  # the ranks share the machine's cores
    writes = train_on_rank(rank, world, port, registered_recipe, runs, watch=watch)
    Path(record, f"rank{rank}.json").write_text(json.dumps(writes))


def watch_writes(folder: str | os.PathLike) -> list[str]:
    """Every path under `folder` this process opens for writing, creates, renames (from or to), copies
    to or removes from now on, as "EVENT PATH" lines in the returned list (a Python audit hook, which
    stays for the life of the process)."""
    root = os.path.realpath(folder)
    seen: list[str] = []

    def hook(event: str, args: tuple) -> None:
        for path in _written_paths(event, args):
            if isinstance(path, (str, bytes, os.PathLike)) and _under(os.fsdecode(path), root):
                seen.append(f"{event} {os.fsdecode(path)}")

    sys.addaudithook(hook)
    return seen


def _written_paths(event: str, args: tuple) -> list[Any]:
    """The paths an audited event writes, makes or removes (none for a read)."""
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
        return [path] if writing else []
    if event == "os.rename":  # os.rename and os.replace: the source goes, the target comes
        return [args[0], args[1]]
    if event == "shutil.copyfile":
        return [args[1]]
    if event in ("os.mkdir", "os.remove", "os.rmdir"):
        return [args[0]]
    return []


def _under(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)
