"""The `fico` command. Listing stays instant: heavy modules load only in the commands that need them."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from fico_registry.errors import FicoError

# Sub-commands defined in other modules, imported only when invoked (or for --help).
LAZY_COMMANDS = {
    "evaluate": ("fico_registry.cli.evaluate", "evaluate_cmd"),
    "evaluate-embeddings": ("fico_registry.cli.evaluate", "evaluate_embeddings_cmd"),
    "evaluate-similarity": ("fico_registry.cli.evaluate", "evaluate_similarity_cmd"),
    "evaluate-cascade": ("fico_registry.cli.cascade", "evaluate_cascade_cmd"),
    "corpus": ("fico_registry.cli.evaluate", "corpus_group"),
    "demo": ("fico_registry.cli.demo", "demo_cmd"),
    "bench": ("fico_registry.cli.bench", "bench"),
    "submit": ("fico_registry.cli.leaderboard", "submit_cmd"),
    "leaderboard": ("fico_registry.cli.leaderboard", "leaderboard"),
    "train": ("fico_registry.cli.train", "train_cmd"),
    "check": ("fico_registry.cli.check", "check_cmd"),
    "plugin": ("fico_registry.cli.check", "plugin_group"),
}


class FicoGroup(click.Group):
    """A click group with lazily imported commands, plugin commands, and one-line errors."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx)) | set(LAZY_COMMANDS)
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        if name in LAZY_COMMANDS:
            module_name, attr = LAZY_COMMANDS[name]
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and module_name.startswith(exc.name):
                    return None  # not built in this version
                raise
            return getattr(module, attr)
        return None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FicoError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc.strerror or exc}: {exc.filename}", err=True)
            sys.exit(2)


@click.group(cls=FicoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="fico-registry", prog_name="fico")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """fico: evaluate image-text retrieval models the FiCo-ITR way, through plugins."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or os.environ.get("FICO_DEBUG") == "1"


def _console():
    from rich.console import Console

    return Console()


def _table(title: str, columns: Sequence[str], **options: Any) -> Any:
    """A rich Table with these column headers (rich loads only when a listing prints a table)."""
    from rich.table import Table

    table = Table(title=title, **options)
    for column in columns:
        table.add_column(column)
    return table


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _problems_note(console: Any) -> None:
    from fico_registry.plugin_api.registry import get_registry

    registry = get_registry()
    if registry.problems or registry.warnings:
        counts = f"{len(registry.problems)} plugin problem(s)"
        counts += f", {len(registry.warnings)} warning(s)" if registry.warnings else ""
        console.print(f"[yellow]{counts}; see `fico plugins`[/yellow]")


def _owner_cell(spec: Any) -> str:
    """The distribution, flagged when another distribution registers the same name."""
    from fico_registry.plugin_api.registry import get_registry

    others = get_registry().conflicts(spec)
    owner = spec.distribution or ""
    if not others:
        return owner
    return owner + f" [red](name also registered by {', '.join(others)}: use {owner}:{spec.name})[/red]"


@cli.command("models")
@click.option("--family", type=click.Choice(["vlp", "fg", "cg"]), help="Only this family.")
@click.option(
    "--output", "output_kind", type=click.Choice(["binary", "continuous", "similarity"]), help="Only this output kind."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_cmd(family: str | None, output_kind: str | None, as_json: bool) -> None:
    """List the registered models."""
    from fico_registry.plugin_api.registry import list_models

    specs = list_models(family=family, output=output_kind)
    if as_json:
        from fico_registry.plugin_api.registry import get_registry

        _print_json([{**s.to_dict(), "name_conflicts": get_registry().conflicts(s)} for s in specs])
        return
    from fico_registry.cli.tables import models_table, print_unclipped

    console = _console()
    print_unclipped(console, models_table(specs, _owner_cell))  # never cuts a name (narrow terminal or piped)
    _problems_note(console)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_cmd(as_json: bool) -> None:
    """List plugins, what each registered, and any problems."""
    from fico_registry.plugin_api.registry import plugins

    infos = plugins()
    if as_json:
        _print_json([i.to_dict() for i in infos])
        return
    from rich.markup import escape

    table = _table(
        f"{len(infos)} plugins", ("plugin", "distribution", "version", "import", "hooks", "registered", "status")
    )

    for i in infos:
        registered = ", ".join(i.models + i.datasets + i.feature_pipelines) or "-"
        status = "ok" if i.ok else "[red]" + escape("; ".join(f"{p.stage}: {p.error}" for p in i.problems)) + "[/red]"
        if i.warnings:
            status += "\n[yellow]" + escape("; ".join(f"warning: {p.error}" for p in i.warnings)) + "[/yellow]"
        took = "" if i.import_ms is None else f"{i.import_ms:.0f} ms"
        name = i.name + (" (built-in)" if i.builtin else "")
        table.add_row(name, i.distribution or "", i.version or "", took, ", ".join(i.hooks), registered, status)
    _console().print(table)


@cli.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def datasets_cmd(as_json: bool) -> None:
    """List the registered datasets and the files each one needs."""
    from fico_registry.plugin_api.registry import list_datasets

    specs = list_datasets()
    if as_json:
        _print_json([s.to_dict() for s in specs])
        return
    table = _table(
        f"{len(specs)} datasets", ("name", "splits", "description", "files you supply", "labels"), show_lines=True
    )
    for s in specs:
        files = "\n".join(f"{k}: {v}" for k, v in s.files.items()) or "(none: generated)"
        table.add_row(s.name, ", ".join(s.splits), s.description, files, s.labels)
    _console().print(table)


@cli.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_cmd(model: str, as_json: bool) -> None:
    """Show one model card: configs, checkpoints, inputs, paper, license."""
    from fico_registry.plugin_api.registry import get_model_spec

    spec = get_model_spec(model)
    data = spec.to_dict()
    if as_json:
        _print_json(data)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{spec.name} ({spec.distribution})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key in (
        "family",
        "output",
        "dim",
        "bits",
        "dtype",
        "measure",
        "query_time_attention",
        "rerank_k",
        "image_input",
        "text_input",
        "paper",
        "url",
        "license",
        "description",
    ):
        value = data.get(key)
        if value not in (None, ""):
            table.add_row(key, escape(str(value)))  # plugin text is data, not rich markup
    if spec.aliases:
        table.add_row("aliases", ", ".join(spec.aliases))
    table.add_row("configs", "\n".join(f"{k}: {json.dumps(v)[:200]}" for k, v in spec.configs.items()))
    ckpts = [
        f"{k}: {c.source} ({c.format})"
        + (f" sha256 {c.sha256[:12]}…" if c.sha256 else "")
        + (f"\n  {c.description}" if c.description else "")
        for k, c in spec.checkpoints.items()
    ]
    table.add_row("checkpoints", escape("\n".join(ckpts)) or "none published")
    from fico_registry.plugin_api.registry import get_registry

    trainer = get_registry().trainers.get(spec.name)
    if trainer is not None:
        about = f"fico train {spec.name} --dataset ... ({trainer.distribution}); {trainer.description}"
        table.add_row("training", escape(about.strip()))
    _console().print(table)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    first = next((a for a in args if not a.startswith("-")), None)
    if first is None or (first not in cli.commands and first not in LAZY_COMMANDS):
        _add_plugin_commands()  # plugin commands (fico_commands hook), only when one may be asked for
    cli.main(args=args, prog_name="fico", obj={})


def _add_plugin_commands() -> None:
    from fico_registry.plugin_api.registry import get_registry

    try:
        get_registry().add_commands(cli)
    except Exception as exc:  # a broken plugin must not break the command line
        click.echo(f"warning: plugin commands unavailable: {exc}", err=True)
