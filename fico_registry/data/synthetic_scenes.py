"""Synthetic scenes: what a picture of the synthetic corpus holds, and how it is drawn.

A scene is 1 to 4 things (shape, colour, size, grid cell) on a background; its split is fixed by a
hash of its description so splits never share a scene. `render` draws it with PIL.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass

import numpy as np

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
