"""load_model: spec -> factory -> Encoder, with checkpoint resolution and output checks."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError, ConfigError, ModelOutputError
from fico_registry.plugin_api.cards import Checkpoint, ModelSpec, OutputKind, QueryTimeAttention
from fico_registry.plugin_api.registry import get_model_spec, resolve_callable
from fico_registry.runtime.devices import resolve_device

log = logging.getLogger(__name__)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def fico_home() -> Path:
    """Where fico keeps caches and user-supplied checkpoints ($FICO_HOME, default ~/.cache/fico)."""
    return Path(os.environ.get("FICO_HOME") or Path.home() / ".cache" / "fico")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """Where the weights of a loaded model came from (goes into every report)."""

    source: str  # what the user asked for
    path: Path | None  # local file or folder, if any
    hub_id: str | None  # a hub id handed to the plugin's own from_pretrained
    name: str | None = None  # the spec's checkpoint name, if it was one
    format: str | None = None
    sha256: str | None = None

    @property
    def location(self) -> Path | str:
        return self.path if self.path is not None else str(self.hub_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "path": None if self.path is None else str(self.path),
            "hub_id": self.hub_id,
            "format": self.format,
            "sha256": self.sha256,
        }


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's files in name order; memoised by (path, size, mtime)."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    key = json.dumps([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    memo_file = fico_home() / "sha256-memo.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    value = digest.hexdigest()
    try:
        memo[key] = value
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_file)
    except OSError:
        pass  # a read-only home only costs a re-hash next time
    return value


def resolve_checkpoint(spec: ModelSpec, checkpoint: str | os.PathLike | None) -> ResolvedCheckpoint | None:
    """Turn what the user passed (a known checkpoint name, a path, a hub id) into a location.

    Nothing is downloaded: a known checkpoint that lives at a URL must be placed in
    $FICO_HOME/checkpoints/ (the error says where and which sha256 it must have).
    """
    if checkpoint is None:
        return None
    text = os.fspath(checkpoint)
    if isinstance(checkpoint, str) and text.startswith("hf-hub:"):  # open_clip style: always a hub id
        return ResolvedCheckpoint(source=text, path=None, hub_id=text[len("hf-hub:") :])
    if isinstance(checkpoint, str) and text.startswith("local-dir:"):  # a folder, never a hub id
        folder = Path(text[len("local-dir:") :]).expanduser()
        if not folder.is_dir():
            raise CheckpointError(f"{text}: {folder} is not a folder")
        return ResolvedCheckpoint(source=text, path=folder.resolve(), hub_id=None, sha256=sha256_of(folder))
    known: Checkpoint | None = spec.checkpoints.get(text) if isinstance(checkpoint, str) else None
    if known is not None:
        return _resolve_known(spec, text, known)
    path = Path(text).expanduser()
    if path.exists():
        sha = sha256_of(path)
        for name, ck in spec.checkpoints.items():
            if Path(ck.source).name == path.name and ck.sha256 and ck.sha256 != sha:
                raise CheckpointError(
                    f"{path} has sha256 {sha}, but {spec.name}'s checkpoint {name!r} ({ck.source}) should have "
                    f"{ck.sha256}: the file is corrupt or a different release"
                )
        return ResolvedCheckpoint(source=text, path=path.resolve(), hub_id=None, sha256=sha)
    if _HUB_ID.match(text) and not text.startswith((".", "/")):
        return ResolvedCheckpoint(source=text, path=None, hub_id=text)
    names = ", ".join(spec.checkpoints) or "none"
    raise CheckpointError(
        f"checkpoint {text!r} for {spec.name} is neither an existing file or folder, a hub id, nor a known "
        f"checkpoint name (known: {names})"
    )


def _resolve_known(spec: ModelSpec, name: str, ck: Checkpoint) -> ResolvedCheckpoint:
    source = ck.source
    if source.startswith(("http://", "https://")):
        target = fico_home() / "checkpoints" / source.rsplit("/", 1)[-1].split("?")[0]
        if not target.exists():
            sha = f" (sha256 {ck.sha256})" if ck.sha256 else ""
            about = f" [{ck.description}]" if ck.description else ""
            raise CheckpointError(
                f"{spec.name} checkpoint {name!r} is not on this machine: download {source}{sha} to {target}, "
                f"or pass checkpoint=PATH{about}"
            )
        path = target
    elif Path(source).expanduser().exists():
        path = Path(source).expanduser()
    elif (fico_home() / "checkpoints" / source).exists():
        path = fico_home() / "checkpoints" / source
    elif _HUB_ID.match(source):
        return ResolvedCheckpoint(source=name, path=None, hub_id=source, name=name, format=ck.format)
    else:
        about = f" [{ck.description}]" if ck.description else ""
        raise CheckpointError(
            f"{spec.name} checkpoint {name!r} ({source}) not found: put it in {fico_home() / 'checkpoints'} "
            f"or pass checkpoint=PATH{about}"
        )
    sha = sha256_of(path)
    if ck.sha256 and sha != ck.sha256:
        raise CheckpointError(f"{path}: sha256 {sha} does not match {spec.name} checkpoint {name!r} ({ck.sha256})")
    return ResolvedCheckpoint(source=name, path=path.resolve(), hub_id=None, name=name, format=ck.format, sha256=sha)


class Model:
    """A loaded model: the plugin's encoder plus its card, config, checkpoint and device.

    Calls are passed to the encoder and what comes back is checked against the card, so a
    plugin that returns the wrong shape or kind fails loudly instead of skewing metrics.
    """

    def __init__(
        self,
        spec: ModelSpec,
        encoder: Any,
        *,
        config_name: str,
        config: dict[str, Any],
        checkpoint: ResolvedCheckpoint | None,
        device: str,
    ) -> None:
        self.spec = spec
        self.encoder = encoder
        self.config_name = config_name
        self.config = config
        self.checkpoint = checkpoint
        self.device = device
        for method in ("encode_images", "encode_texts"):
            if not callable(getattr(encoder, method, None)):
                raise ModelOutputError(
                    f"{spec.name}: the factory returned {type(encoder).__name__}, which has no {method}()"
                )
        # Tiny / custom configs change widths: the encoder may say its own (dim / bits attributes).
        own = getattr(encoder, "bits" if spec.output is OutputKind.BINARY else "dim", None)
        self.width: int | None = own if isinstance(own, int) else (spec.width if config_name == "default" else None)
        if spec.query_time_attention is QueryTimeAttention.CROSS_ATTENTION and not callable(
            getattr(encoder, "score", None)
        ):
            raise ModelOutputError(f"{spec.name}: a cross-attention model's encoder must have score(images, texts)")
        if spec.query_time_attention is QueryTimeAttention.FUSION_RERANK and not callable(
            getattr(encoder, "score_pairs", None)
        ):
            raise ModelOutputError(
                f"{spec.name}: a fusion re-rank model's encoder must have score_pairs(images, texts)"
            )

    def __repr__(self) -> str:
        ck = "random init" if self.checkpoint is None else self.checkpoint.source
        return f"Model({self.spec.name!r}, config={self.config_name!r}, checkpoint={ck!r}, device={self.device!r})"

    @property
    def name(self) -> str:
        return self.spec.name

    def encode_images(self, batch: Any) -> Any:
        return self._checked(self.encoder.encode_images(batch), _len(batch), "encode_images")

    def encode_texts(self, batch: Any) -> Any:
        return self._checked(self.encoder.encode_texts(batch), _len(batch), "encode_texts")

    def score(self, images: Any, texts: Any) -> Any:
        import torch

        out = self.encoder.score(images, texts)
        expected = (_len(images), _len(texts))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelOutputError(f"{self.name}.score returned {got}; expected a tensor of shape {expected}")
        return out

    def score_pairs(self, images: Any, texts: Any) -> Any:
        import torch

        out = self.encoder.score_pairs(images, texts)
        n = _len(images)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n,):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelOutputError(f"{self.name}.score_pairs returned {got}; expected a tensor of shape ({n},)")
        return out

    def _checked(self, out: Any, n: int | None, method: str) -> Any:
        import torch

        embeds = out.get("embeds") if isinstance(out, dict) else out
        if isinstance(out, dict):
            for key, value in out.items():
                if not isinstance(value, torch.Tensor):
                    raise ModelOutputError(
                        f"{self.name}.{method} returned {key!r} as {type(value).__name__}, not a tensor"
                    )
                if n is not None and value.shape[0] != n:
                    raise ModelOutputError(f"{self.name}.{method}: {key!r} has {value.shape[0]} rows for {n} inputs")
        if self.spec.output is OutputKind.SIMILARITY and embeds is None:
            return out  # only features for the scorer; their layout is the plugin's business
        if not isinstance(embeds, torch.Tensor):
            raise ModelOutputError(f"{self.name}.{method} returned {type(embeds).__name__}; expected a torch.Tensor")
        if n is not None and embeds.shape[0] != n:
            raise ModelOutputError(f"{self.name}.{method} returned {embeds.shape[0]} rows for {n} inputs")
        if self.spec.output is OutputKind.BINARY:
            _check_codes(embeds, self.name, self.width, method)
        elif embeds.is_floating_point():
            if self.width is not None and embeds.shape[-1] != self.width:
                raise ModelOutputError(
                    f"{self.name}.{method} returned width {embeds.shape[-1]}; expected dim={self.width}"
                )
            if not torch.isfinite(embeds).all():
                raise ModelOutputError(f"{self.name}.{method} returned NaN or infinite values")
        else:
            raise ModelOutputError(
                f"{self.name}.{method} returned dtype {embeds.dtype}; a continuous model returns floats"
            )
        return out

    def provenance(self) -> dict[str, Any]:
        from importlib import metadata

        version = None
        if self.spec.distribution:
            with contextlib.suppress(metadata.PackageNotFoundError):
                version = metadata.version(self.spec.distribution)
        return {
            "name": self.spec.name,
            "family": str(self.spec.family),
            "output": str(self.spec.output),
            "distribution": self.spec.distribution,
            "version": version,
            "config_name": self.config_name,
            "config": self.config,
            "checkpoint": None if self.checkpoint is None else self.checkpoint.to_dict(),
            "device": self.device,
            "training_run": self.training_run(),
        }

    def training_run(self) -> dict[str, Any] | None:
        """The run record `fico train` wrote beside this checkpoint (data hashes, seed, epochs, versions)."""
        ck = self.checkpoint
        if ck is None or ck.path is None:
            return None
        record = (ck.path if ck.path.is_dir() else ck.path.parent) / "run.json"
        try:
            return json.loads(record.read_text()) if record.is_file() else None
        except (OSError, ValueError):
            return None  # a damaged record is left out, never guessed at


def _len(batch: Any) -> int | None:
    if isinstance(batch, dict):
        first = next(iter(batch.values()), None)
        return None if first is None else len(first)
    try:
        return len(batch)
    except TypeError:
        return None


def _check_codes(codes: Any, name: str, bits: int | None, method: str) -> None:
    import torch

    if codes.dtype == torch.uint8 and bits is not None and codes.shape[-1] * 8 == bits:
        return  # packed bits
    if bits is not None and codes.shape[-1] != bits:
        raise ModelOutputError(f"{name}.{method} returned {codes.shape[-1]} bits; expected bits={bits}")
    values = torch.unique(codes)
    ok = set(values.tolist()) <= {-1, 1} or set(values.tolist()) <= {0, 1}
    if not ok:
        raise ModelOutputError(
            f"{name}.{method} returned non-binary codes (values {values[:6].tolist()}...); "
            "return sign() codes in {-1,+1}, {0,1}, or packed uint8 bits"
        )


def resolve_config(spec: ModelSpec, config: str | Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(name, config) of a model card's config: a named one, or a dict of keys over "default" (name None).

    The config is a deep copy: callers (training recipes, factories) may change it freely.
    """
    if isinstance(config, str):
        if config not in spec.configs:
            raise ConfigError(f"{spec.name} has no config {config!r}; it has: {', '.join(spec.configs)}")
        return config, copy.deepcopy(dict(spec.configs[config]))
    if isinstance(config, Mapping):
        return None, copy.deepcopy({**spec.configs["default"], **config})
    raise ConfigError(f"config must be a config name or a dict, got {type(config).__name__}")


@contextmanager
def seeded(seed: int, device: Any) -> Iterator[None]:
    """Seed torch (CPU and `device`'s GPU), numpy and random inside; restore their states after."""
    import random

    import numpy as np
    import torch

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    gpus = [device.index or 0] if getattr(device, "type", None) == "cuda" else []
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def load_model(
    name: str,
    config: str | dict[str, Any] = "default",
    checkpoint: str | os.PathLike | None = None,
    device: str | None = None,
    *,
    seed: int = 0,
) -> Model:
    """Build a registered model.

    config: a named configuration of the card ("default" = published architecture, "tiny" =
    a few-kB test version) or a dict overriding "default". checkpoint: None (random init), a
    checkpoint name from the card, a local file or folder, or a hub id. device: "cpu", "cuda",
    "cuda:1", or None / "auto". seed: seeds torch, numpy and random while the model is built, so
    random weights (no checkpoint, or layers a checkpoint does not cover) are the same on every run.
    """
    spec = get_model_spec(name)
    config_name, cfg = resolve_config(spec, config)
    config_name = "custom" if config_name is None else config_name
    resolved = resolve_checkpoint(spec, checkpoint)
    if resolved is None and config_name != "tiny":
        log.warning("%s: no checkpoint given, weights are random (fine for timing, not for accuracy)", spec.name)
    dev = str(resolve_device(device, allow_meta=True))
    factory = resolve_callable(spec.factory)
    location = None if resolved is None else resolved.location
    with seeded(seed, dev):
        encoder = factory(spec=spec, config=cfg, checkpoint=location, device=dev)
    return Model(spec, encoder, config_name=config_name, config=cfg, checkpoint=resolved, device=dev)
