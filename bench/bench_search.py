"""The FAISS search study at the issue's size (10K images x 50K captions, d=2048, 64-bit codes).

A thin wrapper over `fico bench search` that also checks the acceptance bar: HNSW keeps at
least 95% of exhaustive search's R@1. Extra arguments replace the defaults below.

Usage: .venv/bin/python bench/bench_search.py [--sizes 10000x50000 --dim 2048 ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

DEFAULTS = ["--sizes", "10000x50000", "--dim", "2048", "--bits", "64", "--plots", "fico-out/bench-search"]


def main() -> None:
    from click.testing import CliRunner

    from fico_registry.cli.main import cli

    args = sys.argv[1:] or DEFAULTS
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "search.json"
        if "--json" not in args:
            args = [*args, "--json", str(out)]
        else:
            out = Path(args[args.index("--json") + 1])
        result = CliRunner().invoke(cli, ["bench", "search", *args], obj={})
        print(result.output, end="")
        if result.exit_code:
            sys.exit(result.exit_code)
        doc = json.loads(out.read_text())
    failed = [r for r in doc["results"] if not r["indexes"]["hnsw-flat"]["target"]["met"]]
    for r in doc["results"]:
        hnsw = r["indexes"]["hnsw-flat"]
        print(f"{r['n_database']} x {r['n_queries']}: HNSW R@1 {hnsw['recall']['1']:.4f} with {hnsw['params']}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
