"""A synthetic image-text retrieval corpus, built offline: rendered shape scenes with captions.

Each scene holds 1 to 4 objects, each of 12 shape types, 11 colours, 3 sizes, placed in distinct
cells of a 3x3 grid, on one of 6 background colours; some scenes repeat an object type and colour
("two red circles"). Per image:
- a PNG rendered with PIL (anti-aliased by drawing at twice the size);
- `captions_per_image` distinct captions generated from the scene with varied templates,
  synonyms, word order, and which objects they mention (some name only one or two objects,
  their positions or relations), so many captions fit several images;
- multi-hot category labels: the shape types present (class names = SHAPES);
- region features in the bottom-up-attention layout, (36, 2048) float32: each region's
  attributes (shape, colour, size, position, region kind) mapped through a fixed random
  projection (the same for every seed and split, so the feature space is shared), plus noise,
  through a ReLU (bottom-up features are non-negative). Per object: one whole-object region and
  a few partial crops; the rest are background / context regions. Saved as `{split}_ims.npy`
  beside the images and attached as the feature "regions".

Deterministic: the same parameters give byte-identical files. Splits never share a scene:
a scene's split is fixed by a hash of its description (80/10/10 train/val/test), so the
train, val and test generators (each its own seed stream) draw from disjoint scene sets.
Scenes within a split are distinct too. Prefix-stable: the first k images of a larger corpus
equal a corpus of k images with the same seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.data.corpus import Corpus
from fico_registry.data.judgments import Judgments, JudgmentSet
from fico_registry.data.synthetic_captions import scene_captions
from fico_registry.data.synthetic_scenes import (
    _PROJECTION_SEED,
    _RADIUS,
    _SPLIT_CODE,
    BACKGROUNDS,
    COLOURS,
    GENERATOR_VERSION,
    N_REGIONS,
    REGION_DIM,
    SHAPES,
    SIZES,
    SPLITS,
    Scene,
    Thing,
    generate_scenes,
    render,
)
from fico_registry.errors import DataFormatError
from fico_registry.runtime.progress import progress_bar

__all__ = [
    "SHAPES",
    "generate_scenes",
    "graded_judgments",
    "load",
    "region_features",
    "render",
    "scene_captions",
    "synthetic",
]

# -- region features -----------------------------------------------------------------------------
_N_ATTR = len(SHAPES) + len(COLOURS) + len(SIZES) + 2 + 9 + 1 + len(BACKGROUNDS) + 4
_KIND = {"object": 0, "part": 1, "context": 2, "background": 3}


def _projection() -> np.ndarray:
    rng = np.random.default_rng(_PROJECTION_SEED)
    return (rng.standard_normal((_N_ATTR, REGION_DIM)) / math.sqrt(8)).astype(np.float32)


def _attributes(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """(36, n_attr): one attribute row per region."""
    rows = np.zeros((N_REGIONS, _N_ATTR), dtype=np.float32)
    o_colour = len(SHAPES)
    o_size = o_colour + len(COLOURS)
    o_pos = o_size + len(SIZES)
    o_cell = o_pos + 2
    o_scale = o_cell + 9
    o_bg = o_scale + 1
    o_kind = o_bg + len(BACKGROUNDS)
    colours, backgrounds = list(COLOURS), list(BACKGROUNDS)

    def object_row(t: Thing, strength: float, jitter: float) -> np.ndarray:
        row = np.zeros(_N_ATTR, dtype=np.float32)
        row[SHAPES.index(t.shape)] = strength
        row[o_colour + colours.index(t.colour)] = strength
        row[o_size + SIZES.index(t.size)] = strength
        row[o_pos] = t.x + jitter * float(rng.standard_normal())
        row[o_pos + 1] = t.y + jitter * float(rng.standard_normal())
        row[o_cell + t.cell] = 1.0
        row[o_scale] = _RADIUS[t.size] * 4
        return row

    k = 0
    for thing in scene.things:  # whole objects first, as detectors rank them
        rows[k] = object_row(thing, 1.0, 0.0)
        rows[k, o_kind + _KIND["object"]] = 1.0
        k += 1
    for thing in scene.things:  # partial crops of each object
        for _ in range(int(rng.integers(2, 5))):
            rows[k] = object_row(thing, float(rng.uniform(0.4, 0.8)), 0.05)
            rows[k, o_kind + _KIND["part"]] = 1.0
            k += 1
    if len(scene.things) > 1:  # boxes spanning two objects
        for _ in range(3):
            i, j = rng.choice(len(scene.things), size=2, replace=False)
            rows[k] = 0.5 * (object_row(scene.things[int(i)], 1.0, 0.0) + object_row(scene.things[int(j)], 1.0, 0.0))
            rows[k, o_kind + _KIND["context"]] = 1.0
            k += 1
    while k < N_REGIONS:  # background boxes
        cell = int(rng.integers(9))
        rows[k, o_pos : o_pos + 2] = rng.uniform(0, 1, size=2)
        rows[k, o_cell + cell] = 1.0
        rows[k, o_scale] = float(rng.uniform(0.2, 1.0))
        rows[k, o_kind + _KIND["background"]] = 1.0
        k += 1
    rows[:, o_bg + backgrounds.index(scene.background)] = 1.0
    return rows


def region_features(scene: Scene, rng: np.random.Generator, projection: np.ndarray) -> np.ndarray:
    """(36, 2048) float32, non-negative, like pooled Faster R-CNN region features."""
    attributes = _attributes(scene, rng)
    signal = attributes @ projection
    # uniform noise with standard deviation 0.35 (uniform draws cost a quarter of normal ones)
    noise = rng.random((N_REGIONS, REGION_DIM), dtype=np.float32) - np.float32(0.5)
    noise *= np.float32(0.35 * math.sqrt(12))
    noise += signal
    return np.maximum(noise, 0, out=noise)


# -- the corpus ----------------------------------------------------------------------------------
def synthetic(
    n_images: int = 1000,
    captions_per_image: int = 5,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    split: str = "test",
    *,
    image_size: int = 128,
    regions: bool = True,
    progress: bool = False,
) -> Corpus:
    """Build (or reuse) a synthetic corpus; see the module docstring for what it holds.

    root=None: $FICO_HOME/synthetic/<hash of the parameters>/, reused when complete (a manifest
    is written last, atomically; the folder is built under a temporary name and renamed into
    place, so concurrent builders never see half a corpus). With a root, the files are written
    there (images/, {split}_ims.npy, corpus.json + .npy, manifest.json) and reused when its
    manifest matches these parameters.
    """
    if split not in SPLITS:
        raise ValueError(f"synthetic split must be one of {', '.join(SPLITS)}; got {split!r}")
    for what, value, low in (
        ("n_images", n_images, 1),
        ("captions_per_image", captions_per_image, 1),
        ("image_size", image_size, 16),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{what} must be an integer >= {low}; got {value!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_images": n_images,
        "captions_per_image": captions_per_image,
        "seed": seed,
        "split": split,
        "image_size": image_size,
        "regions": bool(regions),
    }
    if root is None:
        from fico_registry.models.loading import fico_home

        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
        folder = fico_home() / "synthetic" / digest
        if _complete(folder, params):
            return Corpus.load(folder)
        if folder.exists():  # damaged by hand: rebuild it
            shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        building = folder.parent / f".{digest}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            _build(building, params, progress)
            try:
                os.rename(building, folder)
            except OSError:  # another process finished first; its copy is identical
                if not _complete(folder, params):
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return Corpus.load(folder)
    folder = Path(root)
    manifest = _read_manifest(folder)
    if manifest is not None and manifest.get("params") != params:
        raise DataFormatError(
            f"{folder} holds a synthetic corpus with other parameters ({manifest.get('params')}); "
            f"use another folder or delete it"
        )
    if not _complete(folder, params):
        _build(folder, params, progress)
    return Corpus.load(folder)


def load(
    root: str | os.PathLike | None = None, split: str = "test", n_images: int = 1000, seed: int = 0, **options: Any
) -> Corpus:
    """The registered loader of the "synthetic" dataset (options: see `synthetic`)."""
    return synthetic(n_images=n_images, seed=seed, root=root, split=split, **options)


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def _complete(folder: Path, params: dict[str, Any]) -> bool:
    manifest = _read_manifest(folder)
    if manifest is None or manifest.get("params") != params:
        return False
    for name, size in manifest.get("files", {}).items():
        try:
            if (folder / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _build(folder: Path, params: dict[str, Any], progress: bool) -> None:
    n, seed, split = params["n_images"], params["seed"], params["split"]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)  # incomplete until rewritten last
    scenes = generate_scenes(n, seed, split)
    projection = _projection() if params["regions"] else None
    features = None
    if projection is not None:
        features_tmp = folder / f"{split}_ims.npy.tmp-{os.getpid()}"
        features = np.lib.format.open_memmap(
            features_tmp, mode="w+", dtype=np.float32, shape=(n, N_REGIONS, REGION_DIM)
        )
    image_ids, image_paths, captions, labels = [], [], [], np.zeros((n, len(SHAPES)), dtype=np.uint8)
    with progress_bar(None if progress else False, f"synthetic {split}", n) as advance:
        for i, scene in enumerate(scenes):
            # per-image streams: captions and features do not shift when n_images changes
            rng = np.random.default_rng([GENERATOR_VERSION, seed, _SPLIT_CODE[split], i])
            name = f"images/{i:06d}.png"
            render(scene, params["image_size"]).save(folder / name, format="PNG", compress_level=1)
            image_ids.append(f"synthetic-{split}-s{seed}-{i:06d}")
            image_paths.append(name)
            captions.extend(scene_captions(scene, params["captions_per_image"], rng))
            for thing in scene.things:
                labels[i, SHAPES.index(thing.shape)] = 1
            if features is not None and projection is not None:
                features[i] = region_features(scene, rng, projection)
            advance()
    if features is not None:
        features.flush()
        del features
        os.replace(features_tmp, folder / f"{split}_ims.npy")
    k = params["captions_per_image"]
    corpus = Corpus(
        name="synthetic",
        split=split,
        image_ids=image_ids,
        captions=captions,
        caption_to_image=np.repeat(np.arange(n, dtype=np.int64), k),
        image_paths=image_paths,
        root=str(folder),
        caption_ids=[f"{image_id}#{j}" for image_id in image_ids for j in range(k)],
        labels=labels,
        class_names=list(SHAPES),
        meta={"source": "synthetic", **params, "scenes": [s.signature for s in scenes]},
    )
    if params["regions"]:
        corpus = corpus.with_features("regions", folder / f"{split}_ims.npy")
    corpus.save(folder)
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = {"format": "fico-synthetic", "params": params, "content_hash": corpus.content_hash, "files": files}
    tmp = folder / f"manifest.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / "manifest.json")


def graded_judgments(corpus: Corpus) -> JudgmentSet:
    """Graded relevance of a synthetic corpus: grade = objects two scenes share (shape and colour).

    i2t: image q -> every caption of image j, grade shared(q, j); t2i: caption of image i -> image j,
    grade shared(i, j). A pair's own match has the highest grade its scene allows (its object count);
    pairs sharing nothing are not relevant. The scenes are regenerated from the corpus' parameters.
    """
    if corpus.meta.get("source") != "synthetic" or corpus.duplication != 1:
        raise DataFormatError("graded_judgments needs a synthetic corpus as generated (not duplicated)")
    scenes = generate_scenes(corpus.n_images, int(corpus.meta["seed"]), str(corpus.meta["split"]))
    if [s.signature for s in scenes] != list(corpus.meta.get("scenes", [])):
        raise DataFormatError("the corpus' scenes differ from what its parameters generate; rebuild it")
    combos = {(shape, colour): i for i, (shape, colour) in enumerate((s, c) for s in SHAPES for c in COLOURS)}
    counts = np.zeros((len(scenes), len(combos)), dtype=np.int16)
    for i, scene in enumerate(scenes):
        for thing in scene.things:
            counts[i, combos[(thing.shape, thing.colour)]] += 1
    rows, cols, grades = [], [], []
    for lo in range(0, len(scenes), 64):  # shared(i, j) = sum_k min(counts[i, k], counts[j, k]), in blocks
        block = np.minimum(counts[lo : lo + 64, None, :], counts[None, :, :]).sum(axis=2)
        r, c = np.nonzero(block)
        rows.append(r + lo)
        cols.append(c)
        grades.append(block[r, c])
    q, j, g = np.concatenate(rows), np.concatenate(cols), np.concatenate(grades).astype(np.float64)
    c2i = np.asarray(corpus.caption_to_image)
    captions_of = [np.flatnonzero(c2i == image) for image in range(corpus.n_images)]
    per = np.array([len(x) for x in captions_of])
    i2t_cols = np.concatenate([captions_of[x] for x in j]) if len(j) else np.zeros(0, np.int64)
    i2t = Judgments.from_pairs(np.repeat(q, per[j]), i2t_cols, corpus.n_images, corpus.n_captions, np.repeat(g, per[j]))
    t2i = i2t.transpose()  # shared(i, j) is symmetric: caption of j -> image q has grade shared(q, j)
    return JudgmentSet("shared-objects", i2t, t2i, source="synthetic scenes: grade = shared (shape, colour) objects")
