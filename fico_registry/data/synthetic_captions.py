"""Synthetic captions: varied English descriptions of a synthetic scene (templates, synonyms,
word order, partial mentions, relations), so that many captions fit several images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fico_registry.data.synthetic_scenes import Scene, Thing

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
        second = words.phrase(b, with_size=bool(rng.random() < 0.5))
        return f"{words.phrase(a, with_size=False)} {_relation(a, b)} {second}"
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
