"""The `fico` command line: one module per command group, each importing its feature lazily
(options.py declares the options several commands share).

May import anything in fico_registry; nothing imports the cli.
"""

from fico_registry.cli.main import cli, main

__all__ = ["cli", "main"]
