"""Utilities every training recipe shares: seeds, crash-safe checkpoints, validation rsum, run record.

Checkpoints are written in the model's ORIGINAL layout (the state dict a recipe passes in);
`Checkpointer` only decides where and how: atomically, keeping the last and the best.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import shutil
import sys
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from fico_registry.errors import ConfigError
from fico_registry.runtime.provenance import short_hardware

RECALL_KEYS = ("R@1", "R@5", "R@10")
_VERSIONED = ("fico-registry", "torch", "numpy", "transformers", "gensim", "scipy")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (all devices') generators."""
    import numpy as np
    import torch

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, then os.replace onto `path`.

    os.replace is atomic on one filesystem, so a crash leaves either the old file or the new
    one, never a truncated checkpoint; the temporary file is removed if saving fails.
    """
    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600; give what open() would
        with os.fdopen(handle, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_copy(source: Path, target: Path) -> None:
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Checkpointer:
    """Per-epoch checkpoints in `out_dir`: the last one (for resuming) and the best one (by validation).

    `state` is the dict in the model's original layout (e.g. {"epoch", "model", "best_rsum",
    "opt", "Eiters"}); recipes may add resume-only entries (an "optimizer" state dict) that the
    original loaders ignore. Everything must be loadable by torch's weights-only unpickler plus
    argparse.Namespace (tensors, containers, numbers, strings, Namespace).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        filename: str = "checkpoint.pth.tar",
        best_filename: str = "model_best.pth.tar",
    ) -> None:
        self.out_dir = Path(out_dir)
        self.last_path = self.out_dir / filename
        self.best_path = self.out_dir / best_filename

    def latest(self) -> dict[str, Any] | None:
        """The last saved state, or None when nothing was saved yet."""
        from fico_registry.plugin_api.checkpoints import load_torch_checkpoint

        if not self.last_path.is_file():
            return None
        state = load_torch_checkpoint(self.last_path)
        if not isinstance(state, dict):
            raise ConfigError(
                f"{self.last_path} holds a {type(state).__name__}, not a checkpoint dict: remove it or pass another "
                "--out"
            )
        return state

    def save(self, epoch: int, state: dict[str, Any], *, is_best: bool) -> Path:
        """Write `state` as the last checkpoint (and as the best one if `is_best`); returns the last's path.

        The best file is written first: if the process dies between the two writes, resuming
        starts from the previous last checkpoint and simply redoes this epoch.
        """
        if not isinstance(state, dict):
            raise ConfigError(f"checkpoint state for epoch {epoch} must be a dict, got {type(state).__name__}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if is_best:
            atomic_save(state, self.best_path)
            _atomic_copy(self.best_path, self.last_path)
        else:
            atomic_save(state, self.last_path)
        return self.last_path


def validation_rsum(report: Any) -> float:
    """R@1 + R@5 + R@10 of both directions, in percent (0..600), as the originals' `rsum`."""
    instance = report.get("instance") if isinstance(report, Mapping) else getattr(report, "instance", None)
    if not isinstance(instance, Mapping):
        raise ConfigError("validation_rsum needs a fico_registry Report (or its to_dict()) with instance metrics")
    total = 0.0
    for direction in ("i2t", "t2i"):
        metrics = instance.get(direction) or {}
        missing = [k for k in RECALL_KEYS if k not in metrics]
        if missing:
            raise ConfigError(
                f"validation report lacks {direction} {', '.join(missing)}: evaluate with recall_ks including 1, 5, 10"
            )
        total += sum(float(metrics[k]) for k in RECALL_KEYS)
    return 100.0 * total


def describe_corpus(corpus: Any) -> dict[str, Any]:
    """Identity of a training / validation corpus: sizes, content hash, feature fingerprints."""
    features = {}
    for name, ref in dict(getattr(corpus, "features", {}) or {}).items():
        try:
            features[name] = ref.fingerprint()
        except OSError as exc:  # a moved feature file must not lose the run record
            features[name] = f"unreadable: {exc}"
    return {
        "name": corpus.name,
        "split": corpus.split,
        "n_images": corpus.n_images,
        "n_captions": corpus.n_captions,
        "content_hash": corpus.content_hash,
        "labels": None if corpus.labels is None else int(corpus.labels.shape[1]),
        "features": features,
    }


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Python and the packages a run record lists (None when absent)."""
    from fico_registry.runtime.provenance import package_versions as installed

    return {"python": platform.python_version(), **installed((*_VERSIONED, *extra))}


def _timestamp(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value).astimezone().isoformat(timespec="seconds")
    return str(value)


def run_record(
    *,
    model: str,
    train_corpus: Any,
    val_corpus: Any,
    seed: int,
    epochs: int,
    options: Mapping[str, Any],
    started: Any,
    finished: Any,
) -> dict[str, Any]:
    """What a training run was: model, data identity, seed, epochs, options, versions, hardware.

    `started` / `finished` are datetimes or POSIX timestamps. Recipes add their own entries
    ("checkpoint", "best_epoch", "best_rsum", "history", ...) to the returned dict.
    """
    record: dict[str, Any] = {
        "model": model,
        "train": describe_corpus(train_corpus),
        "val": describe_corpus(val_corpus),
        "seed": int(seed),
        "epochs": int(epochs),
        "options": dict(options),
        "started": _timestamp(started),
        "finished": _timestamp(finished),
        "versions": package_versions(),
        "hardware": short_hardware(),
    }
    if isinstance(started, (int, float)) and isinstance(finished, (int, float)):
        record["seconds"] = round(float(finished) - float(started), 2)
    elif isinstance(started, datetime) and isinstance(finished, datetime):
        record["seconds"] = round((finished - started).total_seconds(), 2)
    return record


# -- shared by the recipes: precision, torch.distributed, progress -------------------------------
PRECISIONS = ("fp32", "fp16", "bf16")


def autocast(device: str, precision: str):  # -> context manager
    """torch.autocast for "fp16" / "bf16" (fp16 needs CUDA); a no-op context for "fp32"."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and kind != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device (--device cuda); use bf16 or fp32 on CPU")
    return torch.autocast(device_type=kind, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def grad_scaler(device: str, precision: str):  # -> torch.amp.GradScaler
    """A loss scaler, active only for fp16 (bf16 and fp32 need none)."""
    import torch

    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def shard(order: Any, rank: int, world_size: int) -> Any:
    """This rank's share of an epoch's sample order (every rank draws the same seeded order).

    The order is cut to a multiple of world_size so all ranks run the same number of steps
    (DistributedDataParallel needs every rank in every all-reduce).
    """
    if world_size <= 1:
        return order
    usable = len(order) - len(order) % world_size
    return order[rank:usable:world_size]


def all_gather_with_grad(tensor: Any) -> Any:
    """Concatenate a batch from every rank, keeping gradients to the local part.

    Lets a recipe compute its in-batch loss (hardest negatives, contrastive) over the global
    batch as the single-GPU / DataParallel originals did.
    """
    from fico_registry.training import _dist

    return _dist.all_gather_with_grad(tensor)


class TrainingProgress:
    """Per-epoch rich progress bars plus one printed line per epoch; silent on other ranks."""

    def __init__(self, enabled: bool | None, title: str) -> None:
        from fico_registry.runtime.distributed import is_main_process

        if enabled is None:
            enabled = sys.stderr.isatty() and not os.environ.get("FICO_NO_PROGRESS")
        self.enabled = bool(enabled) and is_main_process()
        self.title = title
        self._console = None

    @property
    def console(self):  # -> rich.console.Console
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def log(self, message: str) -> None:
        import logging

        if self.enabled:
            self.console.print(message, highlight=False)
        else:
            logging.getLogger("fico_registry.training").info(message)

    @contextlib.contextmanager
    def epoch(self, epoch: int, epochs: int, steps: int):  # yields advance(n, **fields)
        if not self.enabled:
            yield lambda n=1, **fields: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn(f"{self.title} epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task("train", total=steps, info="")

            def advance(n: int = 1, **fields: Any) -> None:
                info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
                bar.update(task, advance=n, info=info)

            yield advance
