"""The `fico` command: evaluation from files in every supported format, errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fico_registry import evaluate_embeddings, evaluate_similarity
from fico_registry.cli.main import cli
from fico_registry.data.arrays import read_array
from fico_registry.errors import DataFormatError


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path | np.ndarray]:
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(3)
    img = rng.standard_normal((30, 12)).astype(np.float32)
    c2i = np.sort(rng.integers(0, 30, 100))
    c2i[:30] = np.arange(30)  # every image has a caption, counts are uneven
    c2i = np.sort(c2i)
    txt = img[c2i] + rng.standard_normal((100, 12)).astype(np.float32)
    labels = (rng.random((30, 5)) < 0.3).astype(np.uint8)
    np.save(root / "img.npy", img)
    np.save(root / "txt.npy", txt)
    np.save(root / "c2i.npy", c2i)
    np.save(root / "labels.npy", labels)
    np.savez(root / "both.npz", images=img, texts=txt)
    torch.save({"images": torch.from_numpy(img), "texts": torch.from_numpy(txt)}, root / "both.pt")
    from safetensors.numpy import save_file

    save_file({"images": img, "texts": txt}, str(root / "both.safetensors"))
    np.save(root / "i2t.npy", img @ txt.T)
    np.save(root / "t2i.npy", (img @ txt.T).T + 0.01 * rng.standard_normal((100, 30)).astype(np.float32))
    return {"root": root, "img": img, "txt": txt, "c2i": c2i, "labels": labels}


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)


@pytest.mark.parametrize("fmt", ["npy", "npz", "pt", "safetensors"])
def test_evaluate_embeddings_reads_every_format(data, fmt: str) -> None:
    root = data["root"]
    images, texts = (
        (str(root / "img.npy"), str(root / "txt.npy"))
        if fmt == "npy"
        else (f"{root}/both.{fmt}:images", f"{root}/both.{fmt}:texts")
    )
    out = root / f"report-{fmt}.json"
    result = invoke(
        "evaluate-embeddings",
        "--images",
        images,
        "--texts",
        texts,
        "--caption-map",
        str(root / "c2i.npy"),
        "--labels",
        str(root / "labels.npy"),
        "-o",
        str(out),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    got = json.loads(out.read_text())
    want = evaluate_embeddings(data["img"], data["txt"], data["c2i"], data["labels"], progress=False).to_dict()
    assert got["instance"] == want["instance"]
    assert got["category"] == want["category"]


def test_evaluate_similarity_with_separate_t2i(data) -> None:
    root = data["root"]
    out = root / "sim.json"
    result = invoke(
        "evaluate-similarity",
        "--i2t",
        str(root / "i2t.npy"),
        "--t2i",
        str(root / "t2i.npy"),
        "--caption-map",
        str(root / "c2i.npy"),
        "--map-ks",
        "5,N",
        "-o",
        str(out),
        "--labels",
        str(root / "labels.npy"),
    )
    assert result.exit_code == 0, result.output
    got = json.loads(out.read_text())
    want = evaluate_similarity(
        np.load(root / "i2t.npy"), data["c2i"], t2i=np.load(root / "t2i.npy"), labels=data["labels"], map_ks=(5, None)
    ).to_dict()
    assert got["instance"] == want["instance"] and set(got["category"]["i2t"]) >= {"mAP@5", "mAP@N"}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fico_registry", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_errors_are_one_line(data) -> None:
    root = data["root"]
    np.save(root / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    cases = {
        (
            "evaluate-embeddings",
            "--images",
            "objects.npy",
            "--texts",
            "txt.npy",
            "--captions-per-image",
            "5",
        ): "Python objects",
        ("evaluate-embeddings", "--images", "both.npz", "--texts", "txt.npy", "--captions-per-image", "5"): "name one",
        (
            "evaluate-embeddings",
            "--images",
            "img.npy",
            "--texts",
            "txt.npy",
            "--captions-per-image",
            "4",
        ): "--caption-map",
        (
            "evaluate-embeddings",
            "--images",
            "img.npy",
            "--texts",
            "txt.npy",
            "--caption-map",
            "labels.npy",
        ): "caption_to_image",
        (
            "evaluate-embeddings",
            "--images",
            "img.npy",
            "--texts",
            "missing.npy",
            "--captions-per-image",
            "5",
        ): "missing.npy",
        ("evaluate", "no-such-model"): "unknown model",
        ("info", "no-such-model"): "unknown model",
    }
    for args, words in cases.items():
        out = run_cli(*args, cwd=root)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert words in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_pickle_in_torch_file_is_refused(tmp_path: Path) -> None:
    torch.save({"images": torch.zeros(3), "note": Path("x")}, tmp_path / "evil.pt")
    with pytest.raises(DataFormatError, match="not loaded"):
        read_array(tmp_path / "evil.pt:images")


def test_evaluate_a_model_end_to_end(tmp_path: Path) -> None:
    out = run_cli(
        "evaluate",
        "reference-dual",
        "--config",
        "tiny",
        "--dataset-option",
        "n_images=12",
        "--root",
        str(tmp_path / "corpus"),
        "--no-cache",
        "-o",
        "r.json",
        "--plot",
        "pr.png",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"]["name"] == "reference-dual"
    assert report["corpus"]["n_images"] == 12 and report["corpus"]["n_texts"] == 60
    assert (tmp_path / "pr.png").stat().st_size > 1000


def test_models_json_lists_plugin_models() -> None:
    out = run_cli("models", "--json", cwd=Path.cwd())
    names = {m["name"] for m in json.loads(out.stdout)}
    assert {"reference-dual", "reference-hash"} <= names
    from importlib import metadata

    installed = {ep.dist.name for ep in metadata.entry_points(group="fico_registry") if ep.dist}
    listed_dists = {m["distribution"] for m in json.loads(out.stdout)}
    assert installed <= listed_dists | {"fico-features"}  # fico-features registers pipelines, not models


def test_public_evaluate_stays_the_function_after_internal_imports() -> None:
    import fico_registry
    import fico_registry.evaluator.evaluate  # what the CLI and plugins import internally

    assert callable(fico_registry.evaluate) and fico_registry.evaluate.__name__ == "evaluate"
    from fico_registry import evaluate

    assert evaluate is fico_registry.evaluator.evaluate.evaluate
