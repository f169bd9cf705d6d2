"""`fico demo` at a small size: outputs written, above chance, identical for a fixed seed."""

from __future__ import annotations

import json

from rich.console import Console

from fico_registry.cli.demo import run_demo


def test_demo_writes_reports_beats_chance_and_is_reproducible(tmp_path):
    quiet = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - closed with the process
    kwargs = dict(train_images=640, test_images=100, epochs=10, seed=0, device="cpu", progress=False, console=quiet)
    first = run_demo(tmp_path / "a", **kwargs)
    for name in (
        "report-reference-dual.json",
        "report-reference-hash.json",
        "report-random-baseline.json",
        "summary.json",
    ):
        assert json.loads((tmp_path / "a" / name).read_text())
    for name in ("pr-reference-dual.png", "pr-reference-hash.png"):
        assert (tmp_path / "a" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reports = first["reports"]
    chance = reports["random-baseline"]["instance"]
    for model in ("reference-dual", "reference-hash"):
        for direction in ("i2t", "t2i"):
            # 100 images: chance R@10 is about 10% (i2t) / 10% (t2i); trained clearly above it
            r10 = reports[model]["instance"][direction]["R@10"]
            assert r10 > 2 * chance[direction]["R@10"] + 0.05, (model, direction)
    second = run_demo(tmp_path / "b", **kwargs)
    for model in ("reference-dual", "reference-hash"):
        assert second["reports"][model]["instance"] == first["reports"][model]["instance"]
        assert second["reports"][model]["category"] == first["reports"][model]["category"]
