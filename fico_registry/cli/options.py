"""Command-line options that several `fico` commands share, declared once so they cannot drift apart.

Imports click only: `fico --help` imports every command module, and listing must stay instant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

OptionDecorator = Callable[[Any], Any]


def apply_options(func: Any, options: Sequence[OptionDecorator]) -> Any:
    """`func` decorated with `options`, which --help then lists in the order given."""
    for option in reversed(options):
        func = option(func)
    return func


# The same option in every command that loads a registered dataset (click builds a new one per use).
dataset_option = click.option("--dataset", help="A registered dataset (`fico datasets`); default: synthetic.")
split_option = click.option("--split", help="Split of the dataset (default: its test split).")
root_option = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), help="Folder holding the dataset's files."
)


def corpus_source_options(func: Any) -> Any:
    """--dataset, --split, --root, --dataset-option, --corpus: the corpus a command scores, which
    fico_registry.cli.evaluate.load_corpus loads from them."""
    return apply_options(
        func,
        [
            dataset_option,
            split_option,
            root_option,
            click.option(
                "--dataset-option",
                "dataset_options",
                multiple=True,
                help="key=value passed to the dataset loader (e.g. n_images=200).",
            ),
            click.option(
                "--corpus",
                type=click.Path(exists=True, path_type=Path),
                help="A saved Corpus (Corpus.save) instead of --dataset.",
            ),
        ],
    )
