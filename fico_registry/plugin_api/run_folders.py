"""Finding what an original training run wrote or read: its checkpoint file and its side files.

Original training scripts store the paths of their side files (vocabularies, JSON model configs,
data files) in the checkpoint's options, relative to the folder the script ran in (SCAN's
`opt.vocab_path='./vocab/'`) or absolute on the training machine. A run folder copied to another
machine keeps its layout below that folder, so a stored path is looked up, first found wins:

1. the file names the caller expects beside the checkpoint (put there by the user);
2. the stored path as given, when it is absolute;
3. relative to the training folder, deduced from where the run says it saved the checkpoint
   (e.g. SCAN's `opt.model_name='./runs/x/checkpoint'` for `/data/SCAN/runs/x/checkpoint/...`:
   `/data/SCAN`), whole or by its last components;
4. the same relative to the checkpoint's folder and its ancestors (MAX_ANCESTORS); the last
   components serve absolute paths of another machine (`/home/u/SCAN/vocab/f.json` -> `vocab/f.json`);
5. the stored path as given relative to the current directory.

Nothing here opens a file: callers read what is found with their own (safe) readers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath

from fico_registry.errors import CheckpointError

# Folders above the checkpoint's own that are searched: SCAN's default layout puts the
# checkpoint three levels below its training folder (runs/runX/checkpoint/), ADV's four.
MAX_ANCESTORS = 4


def checkpoint_in_run_folder(
    path: str | os.PathLike, names: Sequence[str], *, subfolders: Sequence[str] = (), model: str
) -> Path:
    """`path` if it is a file; in a run folder, the first of `names` found in it or its `subfolders`."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{model}: checkpoint {path} does not exist")
    for folder in (path, *(path / sub for sub in subfolders)):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    looked = ", ".join(str(path / sub) if sub else str(path) for sub in ("", *subfolders))
    raise CheckpointError(
        f"{model}: the run folder {path} holds no {' / '.join(names)} (looked in {looked}): pass the checkpoint "
        "file itself"
    )


CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar")
_COUNTS = {2: "two", 3: "three"}


def checkpoints_in_folder(
    folder: str | os.PathLike, count: int, *, model: str, what: str = "checkpoint files", alternative: str = ""
) -> list[Path]:
    """The `count` checkpoint files (CHECKPOINT_SUFFIXES) of `folder`, in name order: an ensemble's members.

    `alternative` (e.g. " (or set config member_checkpoints)") is said when `folder` is a file.
    """
    folder, number = Path(folder), _COUNTS.get(count, str(count))
    if not folder.is_dir():
        raise CheckpointError(
            f"{model}: the checkpoint must be a folder with the {number} member .pth.tar files{alternative}; "
            f"{folder} is a file"
        )
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES))
    if len(found) != count:
        names = ", ".join(p.name for p in found) or "none"
        raise CheckpointError(f"{model}: {folder} must hold exactly {number} {what}, found {names}")
    return found


def _parts(stored: str | os.PathLike) -> tuple[str, ...]:
    """The components of a stored path without its anchor, '.' and '..' (usable below another folder)."""
    pure = PurePath(os.fspath(stored).replace("\\", "/"))
    return tuple(p for p in pure.parts if p not in (pure.anchor, ".", "..", "/", ""))


def training_folders(checkpoint: str | os.PathLike, saved_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders the training script may have run in: the one `saved_dir` implies, then ancestors.

    A relative `saved_dir` must be the tail of the checkpoint's folder (the training folder is
    what is left above it). An absolute one, from the training machine, is matched on its longest
    common tail: the folder above that tail stands for the rest of the old path.
    """
    folder = Path(checkpoint).absolute().parent
    found: list[Path] = []
    if saved_dir:
        parts = _parts(saved_dir)
        if Path(os.fspath(saved_dir)).is_absolute():
            common = 0
            while common < min(len(parts), len(folder.parts) - 1) and folder.parts[-1 - common] == parts[-1 - common]:
                common += 1
            parts = parts[len(parts) - common :]
        if parts and len(parts) < len(folder.parts) and folder.parts[-len(parts) :] == parts:
            found.append(folder.parents[len(parts) - 1])
    found.extend([folder, *list(folder.parents)[:MAX_ANCESTORS]])
    return list(dict.fromkeys(found))


def candidate_paths(
    stored: str | os.PathLike | None,
    checkpoint: str | os.PathLike,
    *,
    saved_dir: str | os.PathLike | None = None,
    beside: Iterable[str] = (),
) -> list[Path]:
    """Every place a side file is looked for, in order (see the module docstring)."""
    folder = Path(checkpoint).absolute().parent
    out = [folder / name for name in beside]
    if stored:
        given = Path(os.fspath(stored)).expanduser()
        if given.is_absolute():
            out.append(given)
        parts = _parts(stored)
        for root in training_folders(checkpoint, saved_dir):
            out.extend(root.joinpath(*parts[-k:]) for k in range(len(parts), 0, -1))
        if not given.is_absolute():
            out.append(given)
    return list(dict.fromkeys(out))


def find_original_file(
    stored: str | os.PathLike | None,
    checkpoint: str | os.PathLike,
    *,
    saved_dir: str | os.PathLike | None = None,
    beside: Iterable[str] = (),
) -> Path | None:
    """The first existing file of candidate_paths(...), or None."""
    candidates = candidate_paths(stored, checkpoint, saved_dir=saved_dir, beside=beside)
    return next((p for p in candidates if p.is_file()), None)


def missing_original_file(
    model: str,
    file_name: str,
    *,
    checkpoint: str | os.PathLike,
    option: str | None = None,
    stored: str | os.PathLike | None = None,
    config_key: str,
    why: str = "",
) -> CheckpointError:
    """The error for a side file of an original run that is nowhere: names the file and the option to pass."""
    origin = f" (its {option} = {os.fspath(stored)!r})" if option and stored else ""
    reason = f", {why}" if why else ""
    return CheckpointError(
        f"{model}: the original run used {file_name}{origin}{reason}, and it is not beside {checkpoint} nor under the "
        f"folders above it: put {file_name} beside the checkpoint, or pass config={{'{config_key}': "
        f"'/path/to/{file_name}'}}"
    )
