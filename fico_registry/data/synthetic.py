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

import bisect
import hashlib
import json
import math
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fico_registry.data.corpus import Corpus
from fico_registry.errors import DataFormatError

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")
SHAPES = (
    "circle", "square", "triangle", "star", "hexagon", "diamond",
    "cross", "heart", "pentagon", "ring", "ellipse", "crescent",
)  # fmt: skip
COLOURS = {
    "red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 90, 200), "yellow": (240, 200, 30),
    "orange": (255, 127, 14), "purple": (128, 60, 170), "pink": (240, 120, 180), "brown": (140, 86, 45),
    "black": (25, 25, 25), "gray": (127, 127, 127), "cyan": (23, 190, 207),
}  # fmt: skip
BACKGROUNDS = {
    "white": (250, 250, 250), "light gray": (215, 215, 215), "beige": (240, 230, 205),
    "light blue": (205, 225, 245), "light green": (215, 240, 215), "pale pink": (248, 225, 232),
}  # fmt: skip
SIZES = ("small", "medium", "large")
_RADIUS = {"small": 0.085, "medium": 0.125, "large": 0.175}  # fraction of the image side
N_REGIONS, REGION_DIM = 36, 2048
_PROJECTION_SEED = 20240729  # fixed: every corpus shares one feature space
_SPLIT_RANGES = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    size: str
    cell: int  # 0..8, row-major in a 3x3 grid
    x: float  # centre, fraction of the side
    y: float
    angle: float  # degrees


@dataclass(frozen=True)
class Scene:
    background: str
    things: tuple[Thing, ...]

    @property
    def signature(self) -> str:
        """The discrete description: equal signatures mean indistinguishable captions."""
        parts = sorted(f"{t.shape}/{t.colour}/{t.size}/{t.cell}" for t in self.things)
        return f"{self.background}|{';'.join(parts)}"


# -- scenes --------------------------------------------------------------------------------------
_N_THINGS_CDF = [0.25, 0.60, 0.88, 1.0]
_COLOUR_NAMES = list(COLOURS)
_BACKGROUND_NAMES = list(BACKGROUNDS)


def _draw_scene(rng: np.random.Generator) -> Scene:
    # one draw per scene, as Python floats: this is the inner loop of rejection sampling
    u = rng.random(40).tolist()
    n_things = bisect.bisect_right(_N_THINGS_CDF, u[0] * _N_THINGS_CDF[-1]) + 1
    cells = sorted(range(9), key=lambda c: u[1 + c])[:n_things]
    things: list[Thing] = []
    for k, cell in enumerate(cells):
        v = u[10 + 7 * k : 17 + 7 * k]
        if k > 0 and v[0] < 0.3:  # repeat an earlier shape and colour: counts in captions
            base = things[int(v[1] * len(things))]
            shape, colour = base.shape, base.colour
        else:
            shape = SHAPES[int(v[1] * len(SHAPES))]
            colour = _COLOUR_NAMES[int(v[2] * len(_COLOUR_NAMES))]
        size = SIZES[int(v[3] * 3)]
        row, col = divmod(cell, 3)
        margin = _RADIUS[size] * 1.25  # keep the whole shape inside the picture
        x = min(max((col + 0.5) / 3 + (v[4] - 0.5) * 0.1, margin), 1 - margin)
        y = min(max((row + 0.5) / 3 + (v[5] - 0.5) * 0.1, margin), 1 - margin)
        things.append(Thing(shape, colour, size, cell, x, y, (v[6] - 0.5) * 40))
    background = _BACKGROUND_NAMES[int(u[39] * len(_BACKGROUND_NAMES))]
    return Scene(background, tuple(things))


def _split_of(signature: str) -> str:
    value = int.from_bytes(hashlib.sha256(signature.encode()).digest()[:8], "big") / 2**64
    return next(s for s, (lo, hi) in _SPLIT_RANGES.items() if lo <= value < hi)


def generate_scenes(n_images: int, seed: int, split: str) -> list[Scene]:
    """n distinct scenes of `split` (disjoint from the other splits' scenes for any seed)."""
    rng = np.random.default_rng([GENERATOR_VERSION, seed, _SPLIT_CODE[split]])
    scenes: list[Scene] = []
    seen: set[str] = set()
    attempts = 0
    while len(scenes) < n_images:
        attempts += 1
        if attempts > 200 * n_images + 10_000:
            raise ValueError(f"cannot draw {n_images} distinct {split} scenes; ask for fewer images")
        scene = _draw_scene(rng)
        signature = scene.signature
        if signature in seen or _split_of(signature) != split:
            continue
        seen.add(signature)
        scenes.append(scene)
    return scenes


# -- rendering -----------------------------------------------------------------------------------
def _polygon(cx: float, cy: float, radii: list[float], angle: float, start: float = -90.0) -> list[tuple[float, float]]:
    n = len(radii)
    points = []
    for k, radius in enumerate(radii):
        theta = math.radians(start + angle + 360.0 * k / n)
        points.append((cx + radius * math.cos(theta), cy + radius * math.sin(theta)))
    return points


def _outline(thing: Thing, side: int) -> list[tuple[float, float]] | None:
    """The shape as a polygon in pixels (None for shapes drawn otherwise)."""
    cx, cy, r, a = thing.x * side, thing.y * side, _RADIUS[thing.size] * side, thing.angle
    if thing.shape == "square":
        return _polygon(cx, cy, [r * 1.15] * 4, a, start=-45)
    if thing.shape == "triangle":
        return _polygon(cx, cy, [r * 1.2] * 3, a)
    if thing.shape == "star":
        return _polygon(cx, cy, [r * 1.2, r * 0.5] * 5, a)
    if thing.shape == "hexagon":
        return _polygon(cx, cy, [r] * 6, a)
    if thing.shape == "pentagon":
        return _polygon(cx, cy, [r * 1.05] * 5, a)
    if thing.shape == "diamond":
        pts = [(0, -1.25), (0.75, 0), (0, 1.25), (-0.75, 0)]
        return _rotate(pts, cx, cy, r, a)
    if thing.shape == "cross":
        w = 0.38
        pts = [
            (-w, -1),
            (w, -1),
            (w, -w),
            (1, -w),
            (1, w),
            (w, w),
            (w, 1),
            (-w, 1),
            (-w, w),
            (-1, w),
            (-1, -w),
            (-w, -w),
        ]
        return _rotate(pts, cx, cy, r, a)
    if thing.shape == "heart":
        pts = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            hx = 16 * math.sin(t) ** 3 / 16
            hy = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 16
            pts.append((hx, hy + 0.1))
        return _rotate(pts, cx, cy, r * 1.1, a)
    if thing.shape == "ellipse":
        pts = [(math.cos(2 * math.pi * k / 48) * 1.25, math.sin(2 * math.pi * k / 48) * 0.7) for k in range(48)]
        return _rotate(pts, cx, cy, r, a)
    return None


def _rotate(
    points: list[tuple[float, float]], cx: float, cy: float, scale: float, angle: float
) -> list[tuple[float, float]]:
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + scale * (px * c - py * s), cy + scale * (px * s + py * c)) for px, py in points]


def render(scene: Scene, image_size: int = 128):  # -> PIL.Image.Image
    """Draw the scene (at twice the size, then box-downsampled: smooth edges)."""
    from PIL import Image, ImageDraw

    side = 2 * image_size
    image = Image.new("RGB", (side, side), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for thing in scene.things:
        colour = COLOURS[thing.colour]
        cx, cy, r = thing.x * side, thing.y * side, _RADIUS[thing.size] * side
        outline = _outline(thing, side)
        if outline is not None:
            draw.polygon(outline, fill=colour)
        elif thing.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif thing.shape == "ring":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(2, int(r * 0.38)))
        elif thing.shape == "crescent":
            mask = Image.new("L", (side, side), 0)
            mask_draw = ImageDraw.Draw(mask)
            mask_draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
            dx = r * 0.55 * math.cos(math.radians(thing.angle))
            dy = r * 0.55 * math.sin(math.radians(thing.angle))
            mask_draw.ellipse((cx - r + dx, cy - r - dy, cx + r + dx, cy + r - dy), fill=0)
            image.paste(colour, (0, 0), mask)
            draw = ImageDraw.Draw(image)
    return image.reduce(2)


# -- captions ------------------------------------------------------------------------------------
_NOUNS = {
    "circle": [("circle", "circles"), ("disc", "discs"), ("round dot", "round dots")],
    "square": [("square", "squares"), ("square tile", "square tiles")],
    "triangle": [("triangle", "triangles"), ("three-sided shape", "three-sided shapes")],
    "star": [("star", "stars"), ("five-pointed star", "five-pointed stars")],
    "hexagon": [("hexagon", "hexagons"), ("six-sided shape", "six-sided shapes")],
    "diamond": [("diamond", "diamonds"), ("rhombus", "rhombuses")],
    "cross": [("cross", "crosses"), ("plus sign", "plus signs")],
    "heart": [("heart", "hearts"), ("heart shape", "heart shapes")],
    "pentagon": [("pentagon", "pentagons"), ("five-sided shape", "five-sided shapes")],
    "ring": [("ring", "rings"), ("hollow circle", "hollow circles"), ("donut shape", "donut shapes")],
    "ellipse": [("ellipse", "ellipses"), ("oval", "ovals")],
    "crescent": [("crescent", "crescents"), ("crescent moon", "crescent moons"), ("moon shape", "moon shapes")],
}
_COLOUR_WORDS = {"gray": ["gray", "grey"], "purple": ["purple", "violet"], "cyan": ["cyan", "turquoise"]}
_SIZE_WORDS = {
    "small": ["small", "little", "tiny"],
    "medium": ["medium-sized", "mid-sized", ""],
    "large": ["large", "big", "huge"],
}
_PLACES = {
    0: ["in the top left corner", "at the top left", "in the upper left"],
    1: ["at the top", "near the top edge", "at the top center"],
    2: ["in the top right corner", "at the top right", "in the upper right"],
    3: ["on the left", "at the left side", "near the left edge"],
    4: ["in the center", "in the middle", "at the center of the image"],
    5: ["on the right", "at the right side", "near the right edge"],
    6: ["in the bottom left corner", "at the bottom left", "in the lower left"],
    7: ["at the bottom", "near the bottom edge", "at the bottom center"],
    8: ["in the bottom right corner", "at the bottom right", "in the lower right"],
}
_COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
_OPENERS = [
    "",
    "a picture of ",
    "an image showing ",
    "a drawing of ",
    "this image contains ",
    "a simple scene with ",
    "we see ",
]
_BACKDROPS = ["on a {} background", "against a {} backdrop", "over a {} background"]


class _Words:
    """Random word choices for one caption."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, options: list[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def noun(self, shape: str, plural: bool = False) -> str:
        return self.pick(_NOUNS[shape])[1 if plural else 0]

    def colour(self, colour: str) -> str:
        return self.pick(_COLOUR_WORDS.get(colour, [colour]))

    def size(self, size: str) -> str:
        return self.pick(_SIZE_WORDS[size])

    def phrase(self, thing: Thing, *, with_size: bool, with_colour: bool = True, article: bool = True) -> str:
        words = [
            self.size(thing.size) if with_size else "",
            self.colour(thing.colour) if with_colour else "",
            self.noun(thing.shape),
        ]
        text = " ".join(w for w in words if w)
        return _article(text) if article else text


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _groups(scene: Scene) -> list[list[Thing]]:
    """Objects grouped by (shape, colour), for counted phrases like "two red circles"."""
    groups: dict[tuple[str, str], list[Thing]] = {}
    for thing in scene.things:
        groups.setdefault((thing.shape, thing.colour), []).append(thing)
    return list(groups.values())


def _relation(a: Thing, b: Thing) -> str:
    (ra, ca), (rb, cb) = divmod(a.cell, 3), divmod(b.cell, 3)
    if abs(ra - rb) >= abs(ca - cb):
        return "above" if ra < rb else "below"
    return "to the left of" if ca < cb else "to the right of"


def _caption(scene: Scene, style: int, words: _Words) -> str:
    rng = words.rng
    things = list(scene.things)
    order = [things[i] for i in rng.permutation(len(things))]
    backdrop = words.pick(_BACKDROPS).format(scene.background)
    if style == 0:  # every object, counted, with sizes for single ones
        parts = []
        for group in (_groups(scene)[i] for i in rng.permutation(len(_groups(scene)))):
            if len(group) == 1:
                parts.append(words.phrase(group[0], with_size=bool(rng.random() < 0.7)))
            else:
                parts.append(
                    f"{_COUNT_WORDS[len(group)]} {words.colour(group[0].colour)} {words.noun(group[0].shape, True)}"
                )
        text = words.pick(_OPENERS) + _join(parts)
        return text + (" " + backdrop if rng.random() < 0.5 else "")
    if style == 1:  # every object with its position
        parts = [f"{words.phrase(t, with_size=bool(rng.random() < 0.4))} {words.pick(_PLACES[t.cell])}" for t in order]
        return words.pick(["", "there is ", "you can see "]) + _join(parts)
    if style == 2:  # one or two objects only
        mentioned = order[: 1 + int(len(order) > 2 and rng.random() < 0.5)]
        parts = [words.phrase(t, with_size=True) for t in mentioned]
        tail = words.pick([" among other shapes", " and more", ""]) if len(order) > len(mentioned) else ""
        return words.pick(["", "there is ", "the image shows ", "a view with "]) + _join(parts) + tail
    if style == 3:  # a spatial relation (or the position of a lone object)
        if len(order) == 1:
            lone = order[0]
            return f"a single {words.phrase(lone, with_size=True, article=False)} {words.pick(_PLACES[lone.cell])}"
        a, b = order[0], order[1]
        return f"{words.phrase(a, with_size=False)} {_relation(a, b)} {words.phrase(b, with_size=bool(rng.random() < 0.5))}"
    if style == 4:  # how many shapes, and which types (no colours)
        n = len(things)
        count = "one shape" if n == 1 else f"{_COUNT_WORDS[n]} shapes"
        types = [words.phrase(t, with_size=False, with_colour=False) for t in order]
        return f"{count} {backdrop}: {_join(types)}"
    # style 5: colours first
    colours = list(dict.fromkeys(words.colour(t.colour) for t in order))
    kinds = list(dict.fromkeys(words.noun(t.shape, plural=len(things) > 1) for t in order))
    if len(things) == 1:
        return f"a {colours[0]} {kinds[0]} {backdrop}"
    return f"{_join(colours)} shapes, including {_join(kinds[:2])}"


def scene_captions(scene: Scene, n: int, rng: np.random.Generator) -> list[str]:
    """n distinct captions of the scene, each in a different style where possible."""
    words = _Words(rng)
    styles = [int(s) for s in rng.permutation(6)]
    captions: list[str] = []
    attempt = 0
    while len(captions) < n:
        style = styles[attempt % len(styles)] if attempt < 6 else int(rng.integers(6))
        attempt += 1
        text = _caption(scene, style, words).strip()
        text = " ".join(text.split())
        text = text[0].upper() + text[1:] + "."
        if text not in captions:
            captions.append(text)
        elif attempt > 200:
            raise ValueError(f"cannot write {n} distinct captions for scene {scene.signature}")
    return captions


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
    with _maybe_progress(progress, n, f"synthetic {split}") as advance:
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
            if features is not None:
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


class _maybe_progress:
    """A rich progress bar when asked for, else nothing."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        shown = enabled and sys.stderr.isatty() and not os.environ.get("FICO_NO_PROGRESS")
        self.enabled, self.total, self.label = shown, total, label
        self._progress: Any = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self._progress = Progress(transient=True)
        self._progress.start()
        task = self._progress.add_task(self.label, total=self.total)
        return lambda: self._progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
