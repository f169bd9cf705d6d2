"""`fico demo`: the main job on bundled data, offline, in about a minute on two CPU cores.

Generate the synthetic corpus, train the built-in reference dual encoder, evaluate its
continuous and 64-bit hash heads with the standard evaluator (instance and category level),
and write report JSON, a terminal table and precision-recall plots. A random-embedding
baseline is evaluated on the same corpus so chance level is measured, not assumed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click


def run_demo(
    out: str | Path = "fico-out/demo",
    *,
    train_images: int = 2000,
    test_images: int = 1000,
    epochs: int = 12,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
    console: Any = None,
) -> dict[str, Any]:
    import numpy as np

    from fico_registry import evaluate, evaluate_embeddings, get_model_spec, load_model
    from fico_registry.data import synthetic
    from fico_registry.evaluator.report import make_console
    from fico_registry.models.reference import save_checkpoint
    from fico_registry.models.train_reference import train_reference
    from fico_registry.runtime.devices import resolve_device

    console = console or make_console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = str(resolve_device(device))
    started = time.perf_counter()
    console.print(
        f"[bold]fico demo[/bold]: synthetic corpus ({train_images} train / {test_images} test images), device {dev}"
    )
    data_root = out / "data"
    train = synthetic(n_images=train_images, split="train", seed=seed, regions=False, root=data_root / "train")
    test = synthetic(n_images=test_images, split="test", seed=seed, regions=False, root=data_root / "test")
    console.print(f"  {train}\n  {test}  (content hash {test.short_hash})")

    config = dict(get_model_spec("reference-dual").configs["default"])
    network, log = train_reference(train, config, epochs=epochs, seed=seed, device=dev, progress=progress)
    checkpoint = save_checkpoint(
        network,
        out / "reference-checkpoint",
        extra={"train": log.to_dict(), "train_corpus": train.content_hash, "seed": seed},
    )
    console.print(
        f"  trained {log.steps} steps in {log.seconds:.1f} s (final loss {log.losses[-1]:.3f}); checkpoint {checkpoint}"
    )

    summary: dict[str, Any] = {
        "train": log.to_dict(),
        "corpus": {"train": train.content_hash, "test": test.content_hash},
        "reports": {},
    }
    for name in ("reference-dual", "reference-hash"):
        report = evaluate(load_model(name, checkpoint=checkpoint, device=dev), test, cache=False, progress=progress)
        report.to_json(out / f"report-{name}.json")
        report.plot_pr(out / f"pr-{name}.png", title=f"{name} on synthetic test")
        report.print(console)
        summary["reports"][name] = report.to_dict()

    # chance level, measured: random embeddings through the same evaluator
    rng = np.random.default_rng(seed)
    chance = evaluate_embeddings(
        rng.standard_normal((test.n_images, 128)).astype(np.float32),
        rng.standard_normal((test.n_captions, 128)).astype(np.float32),
        test.caption_to_image,
        test.labels,
        device=dev,
        progress=False,
    )
    chance.to_json(out / "report-random-baseline.json")
    summary["reports"]["random-baseline"] = chance.to_dict()
    _print_comparison(console, summary["reports"])
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    console.print(f"wrote {out}/report-*.json, pr-*.png and summary.json in {summary['seconds']} s")
    return summary


def _print_comparison(console: Any, reports: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="reference model vs chance (synthetic test split, %)")
    columns = [
        ("instance", "i2t", "R@1"),
        ("instance", "i2t", "R@10"),
        ("instance", "t2i", "R@1"),
        ("instance", "t2i", "R@10"),
        ("category", "i2t", "mAP@10"),
        ("category", "t2i", "mAP@10"),
        ("category", "i2t", "mAP@N"),
    ]
    table.add_column("model")
    for _, direction, metric in columns:
        table.add_column(f"{direction} {metric}", justify="right")
    for name, data in reports.items():
        cells = [f"{100 * data[level][direction][metric]:.1f}" for level, direction, metric in columns]
        table.add_row(name, *cells)
    console.print(table)


@click.command("demo")
@click.option(
    "--out", "-o", default="fico-out/demo", show_default=True, type=click.Path(file_okay=False), help="Output folder."
)
@click.option("--train-images", default=2000, show_default=True, help="Synthetic training images.")
@click.option("--test-images", default=1000, show_default=True, help="Synthetic test images (5 captions each).")
@click.option(
    "--epochs", default=12, show_default=True, help="Training epochs (fixed schedule: same seed, same numbers)."
)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
def demo_cmd(out: str, train_images: int, test_images: int, epochs: int, seed: int, device: str) -> None:
    """Train and evaluate the built-in reference model on the synthetic corpus (offline)."""
    run_demo(out, train_images=train_images, test_images=test_images, epochs=epochs, seed=seed, device=device)
