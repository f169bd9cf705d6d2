"""`fico models` never cuts a model (or plugin) name: not on a 60-column terminal, not when piped."""

from __future__ import annotations

import io
import types

import pytest
from click.testing import CliRunner
from rich.console import Console

from fico_registry.cli import cli
from fico_registry.cli.tables import models_table, print_unclipped
from fico_registry.plugin_api.registry import list_models

LONG = types.SimpleNamespace(
    name="acme-a-very-long-model-name-vit-large-patch14-336-coco",
    aliases=("acme-long",),
    bits=None,
    dim=768,
    measure="cosine",
    query_time_attention=None,
    family="vlp",
    output="continuous",
    image_input="pixels",
    text_input="text",
    distribution="fico-acme-with-a-long-distribution-name",
    checkpoints={"coco": None},
)


def _render(specs, width, terminal):
    buffer = io.StringIO()
    print_unclipped(Console(file=buffer, width=width, force_terminal=terminal, color_system=None), models_table(specs))
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("width", [60, 80, 100, 125, 140])
def test_narrow_terminal_keeps_every_name_whole(width):
    specs = [*list_models(), LONG]
    lines = _render(specs, width, terminal=True)
    assert not any("…" in line for line in lines)
    assert all(line.rstrip().endswith(("┓", "┃", "┩", "│", "┘")) for line in lines[1:])  # the right edge is not cropped
    for spec in specs:
        name = spec.name + (f" ({', '.join(spec.aliases)})" if spec.aliases else "")
        assert any(name in line and (spec.distribution or "") in line for line in lines), name


def test_a_wide_terminal_is_used_as_it_is():
    lines = _render(list_models()[:3], 200, terminal=True)
    assert max(len(line) for line in lines) <= 200


def test_piped_output_has_one_line_per_model():
    run = CliRunner().invoke(cli, ["models"])  # not a terminal: rich would default to 80 columns
    assert run.exit_code == 0, run.output
    lines = run.stdout.splitlines()
    assert "…" not in run.stdout
    for spec in list_models():
        (line,) = [line for line in lines if f" {spec.name} " in line or f" {spec.name} (" in line]
        assert str(spec.output) in line and (spec.distribution or "") in line
