"""Typed errors. Every message says what is wrong and what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FicoError(Exception):
    """Base class of every error raised on purpose by fico_registry."""


class InputError(FicoError, ValueError):
    """Arrays handed to the evaluator are unusable (shape, dtype, NaN, ranges)."""


class ShapeError(InputError):
    """An array has the wrong number of dimensions or a size that does not line up."""


class DTypeError(InputError):
    """An array has a dtype the operation cannot use without changing its meaning."""


class NonFiniteError(InputError):
    """An array holds NaN or infinity."""


class EmptyInputError(InputError):
    """An array has no rows (no images, captions or dimensions)."""


class MappingError(InputError):
    """caption_to_image / ids do not line up with the images and captions."""


class LabelError(InputError):
    """Category labels are missing, mis-sized or not multi-hot."""


class NonBinaryCodesError(InputError):
    """measure='hamming' was given codes that are not {0,1}, {-1,+1} or packed bits."""


class OptionError(FicoError, ValueError):
    """An option has a value the function does not know (measure, ties, variant...)."""


class MemoryBudgetError(FicoError, MemoryError):
    """Not even the smallest block of work fits in the memory budget."""


class _UnknownName(FicoError, KeyError):
    """A registry lookup failed: the message suggests close names (`name` and sorted `known` kept)."""

    def __init__(self, name: str, known: Iterable[str], message: str):
        self.name = name
        self.known = sorted(known)
        super().__init__(message.format(name=name, close=self._close(name, self.known)))

    @staticmethod
    def _close(name: str, known: list[str]) -> str:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        return f" Did you mean: {', '.join(close)}?" if close else ""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class UnknownModelError(_UnknownName):
    """No registered model has that name."""

    def __init__(self, name: str, known: Iterable[str]):
        known = sorted(known)
        listing = "" if self._close(name, known) else " Run `fico models` to see the installed ones."
        super().__init__(name, known, "unknown model {name!r}.{close}" + listing)


class UnknownDatasetError(_UnknownName):
    """No registered dataset has that name."""

    def __init__(self, name: str, known: Iterable[str]):
        super().__init__(name, known, "unknown dataset {name!r}.{close} Run `fico datasets` to list them.")


class AmbiguousNameError(FicoError, LookupError):
    """Two installed distributions register the same model or dataset name."""

    kind = "name"

    def __init__(self, name: str, distributions: Iterable[str]):
        self.name = name
        self.distributions = list(distributions)
        choices = " or ".join(repr(f"{d}:{name}") for d in self.distributions)
        super().__init__(
            f"{self.kind} name {name!r} is registered by {len(self.distributions)} distributions: "
            f"{', '.join(self.distributions)}. Say which one you mean ({choices}), or uninstall the one you do "
            f"not want (or set FICO_DISABLE_PLUGINS)."
        )


class AmbiguousModelError(AmbiguousNameError):
    """A model name is registered by more than one distribution."""

    kind = "model"


class AmbiguousDatasetError(AmbiguousNameError):
    """A dataset name is registered by more than one distribution."""

    kind = "dataset"


class SpecError(FicoError, ValueError):
    """A ModelSpec / DatasetSpec is malformed."""


class PluginError(FicoError, RuntimeError):
    """A plugin failed to load or registered something malformed (fatal in strict mode)."""


class ConfigError(FicoError, ValueError):
    """An unknown or malformed model configuration."""


class DeviceError(OptionError, ConfigError):
    """A device that is unknown, unsupported or not available on this machine.

    Both an OptionError (what the evaluator raised) and a ConfigError (what load_model raised).
    """


class CheckpointError(FicoError, ValueError):
    """A checkpoint is missing, corrupt, unsafe, or does not match the architecture."""


class MissingInputError(FicoError, LookupError):
    """A model needs an input (pixels, region features, ...) the corpus cannot provide."""


class ModelOutputError(FicoError, RuntimeError):
    """A model returned something other than what its spec declares."""


class DataFormatError(FicoError, ValueError):
    """A dataset or feature file does not have the expected layout."""
