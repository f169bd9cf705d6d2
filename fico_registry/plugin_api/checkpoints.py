"""Safe reading of original checkpoints and pickled side files: nothing arbitrary is executed.

Original repositories saved `.pth.tar` dicts with a pickled argparse.Namespace (`opt`), some
from Python 2. We read them with torch's weights-only unpickler plus an explicit allow-list,
and read other pickles (e.g. VSRN's Vocabulary objects) with an unpickler that resolves only
the classes the caller maps to its own safe stand-ins.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import warnings
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError

SAFE_CHECKPOINT_GLOBALS: tuple[Any, ...] = (argparse.Namespace,)


def load_torch_checkpoint(path: str | os.PathLike, *, allow: Iterable[Any] = ()) -> Any:
    """torch.load(weights_only=True) with argparse.Namespace (plus `allow`) permitted.

    Python-2 era pickles are retried with encoding='latin1'. Anything else a file tries to
    import is refused with an error naming it.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    permitted = [*SAFE_CHECKPOINT_GLOBALS, *allow]
    last: Exception | None = None
    for encoding in (None, "latin1"):
        extra: dict[str, Any] = {} if encoding is None else {"encoding": encoding}
        try:
            with torch.serialization.safe_globals(permitted), warnings.catch_warnings():
                # torch warns that encoding= needs weights_only=False, yet the weights-only
                # unpickler honours it (Python-2 strings decode correctly): silence the false alarm
                warnings.filterwarnings("ignore", message=".*pickle_load_args.*")
                return torch.load(path, map_location="cpu", weights_only=True, **extra)
        except UnicodeDecodeError as exc:
            last = exc
            continue
        except pickle.UnpicklingError as exc:
            text = str(exc)
            if "Unsupported global" in text or "not an allowed global" in text or "WeightsUnpickler" in text:
                raise CheckpointError(
                    f"{path}: refuses to load because the file asks to import code that is not on the allow-list "
                    f"({_first_line(text)}). Only tensors, containers and argparse.Namespace are read."
                ) from None
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({_first_line(text)})") from None
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({_first_line(str(exc))})") from None
    raise CheckpointError(f"{path}: cannot decode this checkpoint's strings ({last})")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "global" in line.lower():
            return line[:300]
    return lines[0][:300] if lines else "unknown error"


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, allowed: Mapping[tuple[str, str], Any], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only {sorted(f'{m}.{n}' for m, n in self.allowed)} are allowed"
            ) from None


def restricted_unpickle(
    path: str | os.PathLike, allowed: Mapping[tuple[str, str], Any], *, encoding: str = "latin1"
) -> Any:
    """Unpickle a file resolving only the (module, name) pairs in `allowed`, each to a safe class.

    Example: VSRN's vocabulary pickles reference ``__main__.Vocabulary``; map that pair to a
    plain class with the same attributes (word2idx, idx2word, idx) and nothing else loads.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, allowed, encoding=encoding).load()
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def saved_options(opt: Any, *, where: str, saved_by: str = "the original training script") -> dict[str, Any]:
    """The options an original checkpoint stored under 'opt' (the argparse.Namespace SCAN-lineage
    train.py scripts pickle, or a dict) as a plain dict; anything else is a CheckpointError."""
    if isinstance(opt, argparse.Namespace):
        opt = vars(opt)
    if not isinstance(opt, Mapping):
        raise CheckpointError(
            f"{where}: checkpoint['opt'] is {type(opt).__name__}, not the argparse.Namespace {saved_by} saves; "
            "the architecture cannot be rebuilt without it"
        )
    return dict(opt)


def state_dict_mismatches(
    expected: Mapping[str, Any],
    state: Mapping[str, Any],
    *,
    optional: Collection[str] = (),
    sides: tuple[str, str] = ("checkpoint", "model"),
) -> list[str]:
    """Why `state` does not load strictly where `expected` (a module's state dict) does, in parts:
    "missing keys: ...", "unexpected keys: ...", "shape mismatches: ..."; empty when it fits.

    Keys in `optional` may be absent (e.g. buffers the model re-derives); `sides` names the two
    shapes in the message. Values without a shape are not compared.
    """
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    theirs, ours = sides
    shapes = [
        f"{k}: {theirs} {tuple(v.shape)} vs {ours} {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and hasattr(v, "shape") and tuple(v.shape) != tuple(expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing keys: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if unexpected:
        parts.append(f"unexpected keys: {', '.join(unexpected[:10])}{' ...' if len(unexpected) > 10 else ''}")
    if shapes:
        parts.append(f"shape mismatches: {'; '.join(shapes[:5])}")
    return parts


def strict_load_state_dict(module: Any, state: Mapping[str, Any], *, what: str, assign: bool = False) -> None:
    """load_state_dict(strict=True) with an error naming every missing / unexpected key and shape.

    assign=True adopts the checkpoint's tensors instead of copying into the module's (for modules
    built on the meta device).
    """
    parts = state_dict_mismatches(module.state_dict(), state)
    if parts:
        raise CheckpointError(f"{what} does not match the architecture: " + " | ".join(parts))
    module.load_state_dict(state, strict=True, assign=assign)
