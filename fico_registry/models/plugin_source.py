"""What identifies a model's code in the embedding cache key: its distribution's version, and for
code that can change without a version bump (editable or local-path installs, or code imported
from a source tree with no installed distribution) a content hash of its source files.

Without the hash, editing an editable plugin kept returning the embeddings of the old code.
The hash covers the bytes of every *.py file under the top-level package of the factory's module
(relative paths included, so a renamed file counts); it is memoised per process on the files'
(path, size, mtime) so repeated evaluations only stat the tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_MEMO: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def installed_from_source(distribution: str | None) -> bool:
    """True when the distribution's code may change in place: an editable (PEP 660) or a local-path
    install (PEP 610 direct_url.json with a file:// url), or no installed distribution at all."""
    if not distribution:
        return True
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return True
    text = dist.read_text("direct_url.json")
    if not text:
        return False  # installed from an index: the version identifies the code
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return True  # unreadable record: hashing costs little, a stale cache costs a wrong number
    if (info.get("dir_info") or {}).get("editable"):
        return True
    return str(info.get("url", "")).startswith("file:")


def package_dir(factory: str) -> Path | None:
    """The folder of the top-level package holding a 'module:callable' factory (None for a single module)."""
    top = factory.split(":", 1)[0].split(".", 1)[0]
    module = sys.modules.get(top)
    locations = list(getattr(module, "__path__", []) or []) if module is not None else []
    if not locations:
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(top)
            if spec is not None:
                locations = list(spec.submodule_search_locations or [])
                if not locations and spec.origin and spec.origin.endswith(".py"):
                    return Path(spec.origin)
    return Path(locations[0]) if locations else None


def source_hash(path: Path) -> str:
    """sha256 over the relative paths and bytes of the *.py files under `path` (or of one file)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if p.is_file())
    base = path.parent if path.is_file() else path
    signature = []
    for file in files:
        stat = file.stat()
        signature.append((file.relative_to(base).as_posix(), stat.st_size, stat.st_mtime_ns))
    memo_key = (str(path.resolve()), tuple(signature))
    if memo_key not in _MEMO:
        digest = hashlib.sha256()
        for (relative, _, _), file in zip(signature, files, strict=True):
            digest.update(relative.encode() + b"\0")
            digest.update(file.read_bytes())
            digest.update(b"\0")
        _MEMO[memo_key] = digest.hexdigest()
    return _MEMO[memo_key]


def code_identity(distribution: str | None, factory: str) -> dict[str, Any]:
    """{"plugin_version": ..., "plugin_source": sha256 or None}: the code part of a cache key."""
    version = None
    if distribution:
        with contextlib.suppress(metadata.PackageNotFoundError):
            version = metadata.version(distribution)
    source = None
    if installed_from_source(distribution):
        folder = package_dir(factory)
        if folder is not None and os.path.exists(folder):
            source = source_hash(folder)
    return {"plugin_version": version, "plugin_source": source}
