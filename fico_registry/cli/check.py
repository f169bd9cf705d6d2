"""`fico check MODEL|DIST` (the conformance kit from the command line) and `fico plugin new`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def _run(label: str, check: Callable[[], Any]) -> bool:
    started = time.perf_counter()
    try:
        result = check()
    except (AssertionError, Exception) as exc:  # every failure is reported; the next check still runs
        message = str(exc) or type(exc).__name__
        if not isinstance(exc, AssertionError):
            message = f"{type(exc).__name__}: {message}"
        click.echo(f"FAIL  {label}\n      " + message.replace("\n", "\n      "))
        return False
    took = f"{(time.perf_counter() - started):.1f} s"
    detail = ""
    if isinstance(result, dict) and result.get("import_ms"):
        timings = ", ".join(f"{ms:.0f} ms ({name})" for name, ms in result["import_ms"].items())
        detail = f"; plugin.py imports in {timings}"
    click.echo(f"ok    {label} ({took}{detail})")
    return True


@click.command("check")
@click.argument("target")
@click.option("--config", default="tiny", show_default=True, help="Model config check_model builds.")
@click.option("--checkpoint", default=None, help="Also load these weights (a single model only).")
def check_cmd(target: str, config: str, checkpoint: str | None) -> None:
    """Run the conformance kit on a plugin distribution or on one model.

    TARGET is a distribution or entry-point name (check_plugin, then check_model on each of its
    models) or a model name / DIST:NAME (check_model). Exits 1 when a check fails.
    """
    from fico_registry.plugin_api.registry import get_registry
    from fico_registry.plugin_api.testing import check_model, check_plugin

    registry = get_registry()
    infos = registry.plugins_of(target)
    if infos and checkpoint is not None:
        raise click.UsageError("--checkpoint applies to one model: pass MODEL or DIST:MODEL")
    results = []
    if infos:
        results.append(_run(f"check_plugin({target!r})", lambda: check_plugin(target)))
        models = sorted({m for info in infos for m in info.models})
        for name in models:
            qualified = f"{target}:{name}"
            check = lambda q=qualified: check_model(q, dist=target, config=config)  # noqa: E731
            results.append(_run(f"check_model({qualified!r})", check))
    else:
        spec = registry.model(target)  # UnknownModelError / AmbiguousModelError: one line from the CLI
        owner = registry.owner(spec)
        label = f"check_model({target!r}) [{spec.distribution or owner.name}]"
        results.append(_run(label, lambda: check_model(target, dist=owner.name, config=config, checkpoint=checkpoint)))
    failed = results.count(False)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


@click.group("plugin")
def plugin_group() -> None:
    """Create plugin packages."""


@plugin_group.command("new")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["continuous", "binary", "similarity"]),
    default="continuous",
    show_default=True,
    help="What the model outputs: embeddings, hash codes, or query-time similarity scores.",
)
@click.option("--path", "path", type=click.Path(path_type=Path), default=None, help="Target folder (default ./NAME).")
def new_cmd(name: str, kind: str, path: Path | None) -> None:
    """Write a working plugin package NAME: pyproject, plugin.py, model.py, tests, README."""
    from fico_registry.cli.scaffold import PluginNames, write_plugin

    names = PluginNames.of(name, kind)
    target = path if path is not None else Path(name)
    written = write_plugin(name, target, kind)
    for file in written:
        click.echo(f"wrote {file}")
    click.echo(
        f"\nmodel {names.model} in distribution {names.distribution} (entry point {names.entry_point}). Next:\n"
        f"  pip install -e {target}\n  fico check {names.entry_point}\n  pytest {target}"
    )
