"""Memory sizes: one parser and one unit rule for every `memory_budget` / `--memory-budget`.

The rule: a size is a number with a unit (B, KB, MB, GB, TB; KiB, MiB, GiB, TiB are the same,
powers of 1024), e.g. '512MB', '1.5GB'. A bare number is bytes, as a Python int is; a bare number
below 1 MiB is refused rather than guessed ('8' is not 8 bytes of working memory anyone wants).
"""

from __future__ import annotations

import math

from fico_registry.errors import OptionError

UNITS = (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1))
SIZE_HELP = "a size with a unit: 512MB, 2GB, 1.5GiB (a bare number is bytes, at least 1 MiB)"


def parse_size(value: int | float | str, *, what: str = "memory_budget") -> int:
    """Bytes from an int (bytes) or a size string; OptionError saying how to write it otherwise."""
    if isinstance(value, bool):
        raise OptionError(f"{what} must be {SIZE_HELP}; got {value!r}")
    if isinstance(value, (int, float)):
        return _whole_bytes(float(value), value, what)
    if not isinstance(value, str):
        raise OptionError(f"{what} must be {SIZE_HELP}; got {type(value).__name__}")
    text = value.strip().upper().replace("IB", "B").replace(" ", "")
    for suffix, scale in UNITS:
        if text.endswith(suffix):
            amount = _number(text[: -len(suffix)], value, what)
            return _whole_bytes(amount * scale, value, what)
    amount = _number(text, value, what)
    if 0 < amount < (1 << 20):
        raise OptionError(
            f"{what} {value!r} has no unit and would mean {format_size(amount)}; write it with a unit, "
            f"e.g. {value.strip()}GB or {value.strip()}MB (a bare number is bytes)"
        )
    return _whole_bytes(amount, value, what)


def _number(text: str, original: str, what: str) -> float:
    try:
        amount = float(text)
    except ValueError:
        raise OptionError(f"{what} {original!r} is not a size; give {SIZE_HELP}") from None
    if not math.isfinite(amount):
        raise OptionError(f"{what} {original!r} is not a finite size; give {SIZE_HELP}")
    return amount


def _whole_bytes(amount: float, original: object, what: str) -> int:
    if not math.isfinite(amount) or amount <= 0:
        raise OptionError(f"{what} must be a positive size, got {original!r}; give {SIZE_HELP}")
    if amount < 1:
        raise OptionError(f"{what} {original!r} is less than one byte; give {SIZE_HELP}")
    return int(amount)  # a fraction of a byte cannot be used: round down


def format_size(n_bytes: float) -> str:
    """A readable size, rounded up so that a non-zero size never reads as 0."""
    if n_bytes < 1024:
        return f"{math.ceil(n_bytes)} B"
    for suffix, scale in UNITS[:-1][::-1]:
        if n_bytes < scale * 1024 or suffix == "TB":
            return f"{math.ceil(n_bytes / scale * 10) / 10:g} {suffix[0]}iB"
    raise AssertionError("unreachable")
