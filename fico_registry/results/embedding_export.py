"""Saved evaluation outputs: what `fico evaluate --save-embeddings DIR` writes and
`fico submit --from-embeddings DIR` reads, so a plugin author needs no script to submit.

DIR holds plain .npy arrays (never pickles) in the corpus order, and `embeddings.json`:

- continuous / binary models: images.npy (n_images, d) or (n_images, m, d), texts.npy (n_texts, d);
  binary codes in {-1, +1} are stored as int8 (exact, 4x smaller than float32), packed codes as given;
- cross-attention models: i2t.npy (n_images, n_texts) scores, higher = more similar (the matrix
  the evaluator computed, what `fico submit --i2t` takes);
- always caption_to_image.npy, labels.npy (when the corpus has labels) and report.json (the
  evaluation's report, whose provenance and costs `fico submit` carries over).

Fusion re-rank models have no full score matrix (only each query's top-k is re-scored), so they
are refused before any work is done.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.errors import DataFormatError, OptionError

MANIFEST = "embeddings.json"
FORMAT = "fico-embeddings"
FORMAT_VERSION = 1


def check_exportable(spec: Any) -> None:
    """Refuse, before evaluating, a model whose outputs `fico submit` cannot take."""
    from fico_registry.plugin_api.cards import OutputKind, QueryTimeAttention

    if spec.output is OutputKind.SIMILARITY and spec.query_time_attention is not QueryTimeAttention.CROSS_ATTENTION:
        raise OptionError(
            f"{spec.name} re-ranks each query's top-k (fusion re-rank): it has no full score matrix to save or "
            "submit; the leaderboard takes embeddings, hash codes or full i2t/t2i score matrices"
        )


def check_new_folder(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OptionError(f"{folder} exists and is not an empty folder; choose a new folder for the saved embeddings")


def save_embeddings(folder: str | os.PathLike, model: Any, corpus: Any, outputs: dict[str, Any], report: Any) -> Path:
    """Write `outputs` (from evaluate(keep_outputs=...)) of `model` on `corpus` into a new `folder`."""
    from fico_registry.plugin_api.cards import OutputKind

    folder = Path(folder)
    spec = model.spec
    check_exportable(spec)
    check_new_folder(folder)
    if spec.output is OutputKind.SIMILARITY:
        if "i2t" not in outputs:
            raise OptionError(
                f"{spec.name}: the score matrix was computed in shards (torchrun); save it in one process"
            )
        arrays = {"i2t": _numpy(outputs["i2t"])}
    else:
        arrays = {"images": _numpy(_embeds(outputs["images"])), "texts": _numpy(_embeds(outputs["texts"]))}
        if spec.output is OutputKind.BINARY:
            arrays = {role: _compact_codes(array) for role, array in arrays.items()}
    arrays["caption_to_image"] = np.asarray(corpus.caption_to_image, dtype=np.int64)
    if corpus.labels is not None:
        arrays["labels"] = np.asarray(corpus.labels, dtype=np.uint8)

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, array in arrays.items():
        np.save(folder / f"{role}.npy", np.ascontiguousarray(array), allow_pickle=False)
        files[role] = {"file": f"{role}.npy", "dtype": array.dtype.name, "shape": list(array.shape)}
    report.to_json(folder / "report.json")
    provenance = model.provenance()
    checkpoint = provenance.get("checkpoint") or {}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": spec.name,
        "output": str(spec.output),
        "measure": None if spec.output is OutputKind.SIMILARITY else spec.measure,
        "bits": getattr(model, "width", None) if spec.output is OutputKind.BINARY else None,
        "distribution": provenance.get("distribution"),
        "version": provenance.get("version"),
        "config_name": provenance.get("config_name"),
        "config": provenance.get("config"),
        "checkpoint_sha256": checkpoint.get("sha256"),
        "checkpoint_source": checkpoint.get("source"),
        "batch_size": report.settings.get("batch_size"),
        "corpus": {
            "name": corpus.name,
            "split": corpus.split,
            "content_hash": corpus.content_hash,
            "n_images": corpus.n_images,
            "n_texts": corpus.n_captions,
        },
        "files": files,
        "report": "report.json",
    }
    # written last: a folder without it is an interrupted save
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return folder


@dataclass(frozen=True)
class SavedEmbeddings:
    folder: Path
    manifest: dict[str, Any]

    def path(self, role: str) -> Path | None:
        info = self.manifest["files"].get(role)
        return None if info is None else self.folder / info["file"]

    @property
    def report(self) -> Path | None:
        path = self.folder / str(self.manifest.get("report") or "report.json")
        return path if path.is_file() else None

    def check_corpus(self, corpus: Any) -> None:
        saved = self.manifest["corpus"]
        if saved["content_hash"] != corpus.content_hash:
            raise OptionError(
                f"{self.folder} holds outputs for corpus {saved['name']}/{saved['split']} "
                f"({saved['content_hash'][:12]}), not for {corpus.name}/{corpus.split} ({corpus.short_hash}); "
                "run `fico evaluate ... --corpus` on the board's corpus with --save-embeddings"
            )

    def submit_arguments(self) -> dict[str, Any]:
        """The make_submission() keyword arguments for these outputs."""
        if self.manifest["output"] == "similarity":
            return {"i2t": str(self.path("i2t"))}
        return {
            "images": str(self.path("images")),
            "texts": str(self.path("texts")),
            "measure": self.manifest["measure"],
            "bits": self.manifest.get("bits"),
        }


def read_saved_embeddings(folder: str | os.PathLike) -> SavedEmbeddings:
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(
            f"{folder} holds no {MANIFEST}: write it with `fico evaluate MODEL --corpus ... --save-embeddings {folder}`"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{folder / MANIFEST}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataFormatError(f"{folder / MANIFEST} is not a fico embeddings manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise DataFormatError(f"{folder} was written by a newer fico-registry; upgrade to read it")
    saved = SavedEmbeddings(folder, manifest)
    for role, info in manifest.get("files", {}).items():
        if not (folder / info["file"]).is_file():
            raise DataFormatError(f"{folder}: {info['file']} ({role}) is missing")
    needed = ("i2t",) if manifest.get("output") == "similarity" else ("images", "texts")
    missing = [role for role in needed if saved.path(role) is None]
    if missing:
        raise DataFormatError(f"{folder / MANIFEST}: names no {', '.join(missing)} file")
    return saved


def _embeds(output: Any) -> Any:
    return output["embeds"] if isinstance(output, dict) else output


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()  # numpy has no bfloat16; widening is exact
        value = value.numpy()
    return np.asarray(value)


def _compact_codes(array: np.ndarray) -> np.ndarray:
    """{-1, +1} codes as int8 (exact); anything else (packed uint8, {0, 1}) as given."""
    if array.dtype.kind == "f" and np.isin(array, (-1.0, 1.0)).all():
        return array.astype(np.int8)
    return array
