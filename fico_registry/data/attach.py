"""Feature files named on the command line: `--features [image:|text:]NAME=PATH`.

PATH may hold `{split}`, filled with each corpus's split, so one option serves the train, val
and test corpora of a run (`--features vgg19-fc7=pooled/{split}.npy`). The file is attached
with `Corpus.with_features`, so a model (or a training recipe) reads it instead of running the
feature pipeline of that name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fico_registry.errors import OptionError


@dataclass(frozen=True)
class FeatureFile:
    name: str
    pattern: str
    modality: str = "image"

    def path(self, split: str) -> str:
        return self.pattern.replace("{split}", split)


def parse_feature_files(values: Sequence[str]) -> list[FeatureFile]:
    """FeatureFile per `[image:|text:]NAME=PATH`; a clear OptionError for anything else."""
    files = []
    for value in values:
        spec, sep, pattern = value.partition("=")
        modality, colon, name = spec.partition(":")
        if not colon:
            modality, name = "image", spec
        if not sep or not name or not pattern or modality not in ("image", "text"):
            raise OptionError(f"--features {value!r}: use [image:|text:]NAME=PATH, e.g. vgg19-fc7=feats/{{split}}.npy")
        files.append(FeatureFile(name, pattern, modality))
    return files


def attach_feature_files(corpus: Any, files: Sequence[FeatureFile], split: str) -> Any:
    """The corpus with every file attached (for `split`, which fills `{split}` in the paths)."""
    for file in files:
        path = file.path(split)
        if not os.path.exists(path):
            raise OptionError(f"--features {file.name}: {path} does not exist (split {split!r})")
        corpus = corpus.with_features(file.name, path, modality=file.modality)
    return corpus
