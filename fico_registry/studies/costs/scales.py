"""Collection sizes ("scales") written as IMAGESxTEXTS, and how a base corpus reaches them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fico_registry.errors import OptionError

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000}
_PART = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")

# The paper's extrapolation targets: storage is always reported at these sizes too.
REFERENCE_SCALES = ("1000000x5000000",)


def _count(text: str, whole: str) -> int:
    match = _PART.match(text)
    if not match:
        raise OptionError(f"scale {whole!r}: {text!r} is not a count like 1000, 10k or 1M")
    value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if value != int(value) or value < 1:
        raise OptionError(f"scale {whole!r}: counts must be positive whole numbers")
    return int(value)


@dataclass(frozen=True, order=True)
class Scale:
    """n_images images and n_texts captions: one collection size of a cost run."""

    n_images: int
    n_texts: int

    @classmethod
    def parse(cls, text: str) -> Scale:
        """'1000x5000', '10kx50k', '1Mx5M' (also '1K/5K')."""
        parts = re.split(r"[x/]", text.strip(), flags=re.IGNORECASE)
        if len(parts) != 2:
            raise OptionError(f"scale {text!r} must be IMAGESxTEXTS, e.g. 1000x5000 or 1Mx5M")
        return cls(_count(parts[0], text), _count(parts[1], text))

    @property
    def label(self) -> str:
        return f"{self.n_images}x{self.n_texts}"

    @property
    def short(self) -> str:
        """The paper's way of writing it: 1K/5K, 1M/5M."""
        return f"{_short(self.n_images)}/{_short(self.n_texts)}"

    @property
    def pairs(self) -> int:
        return self.n_images * self.n_texts

    def factor_over(self, base_images: int, base_texts: int) -> int:
        """The duplication factor that turns a base corpus into this scale (or an OptionError)."""
        factor, rest = divmod(self.n_images, base_images)
        if rest or factor < 1 or factor * base_texts != self.n_texts:
            raise OptionError(
                f"scale {self.label} is not a whole duplication of the base corpus ({base_images} images, "
                f"{base_texts} captions): use multiples like {base_images * 10}x{base_texts * 10}"
            )
        return factor


def parse_scales(text: str | list[str] | tuple[str, ...]) -> list[Scale]:
    """A comma-separated list (or list of strings) of scales, sorted by size, duplicates dropped."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scales = sorted({Scale.parse(item) for item in items if item.strip()})
    if not scales:
        raise OptionError("give at least one scale, e.g. --scales 1000x5000,10000x50000")
    return scales


def _short(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("K", 1_000)):
        if n >= size and n % (size // 10) == 0:
            value = n / size
            return f"{value:g}{unit}"
    return str(n)
