"""Sharded evaluation over torch.distributed: 2 CPU ranks (gloo) give the single-process Report.

One torchrun job runs every case (this file is its worker script: see __main__ below); its
ranks join the process group from torchrun's environment by themselves, as `fico` does. The
single-process reports are computed here and compared number for number (floats bit for bit).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

VOLATILE_SETTINGS = {"seconds", "memory_budget", "world_size"}
TORCHRUN = Path(sys.executable).with_name("torchrun")


# -- the cases -------------------------------------------------------------------------------------


def _uneven_caption_map(rng: np.random.Generator, n_images: int) -> np.ndarray:
    counts = rng.integers(1, 5, size=n_images)  # 1..4 captions per image
    c2i = np.repeat(np.arange(n_images), counts)
    return c2i[rng.permutation(len(c2i))]  # captions not grouped by image


def build_cases() -> dict[str, dict[str, Any]]:
    """name -> {"kind", "arrays", "kwargs", "shard", "modes"}: modes are the expected sharding per direction."""
    rng = np.random.default_rng(7)
    cases: dict[str, dict[str, Any]] = {}
    # continuous: random floats (no ties), uneven captions, labels
    n_img = 40
    c2i = _uneven_caption_map(rng, n_img)
    img = rng.standard_normal((n_img, 16)).astype(np.float32)
    txt = (img[c2i] + 1.5 * rng.standard_normal((len(c2i), 16))).astype(np.float32)
    labels = (rng.random((n_img, 6)) < 0.3).astype(np.uint8)
    cont = {"images": img, "texts": txt, "c2i": c2i, "labels": labels}
    both = lambda mode: {"i2t": mode, "t2i": mode}  # noqa: E731
    cases["cosine-full"] = {"kind": "embeddings", "arrays": cont, "kwargs": {}, "modes": both("queries")}
    cases["cosine-topk"] = {
        "kind": "embeddings",
        "arrays": cont,
        "kwargs": {"map_ks": [5, 20]},
        "modes": both("candidates"),
    }
    cases["cosine-topk-blocks"] = {
        "kind": "embeddings",
        "arrays": cont,
        "kwargs": {"map_ks": [5, 20], "memory_budget": 12000, "ties": "pessimistic"},
        "modes": both("candidates"),
    }
    cases["euclidean-queries-blocks"] = {
        "kind": "embeddings",
        "arrays": cont,
        "kwargs": {"measure": "euclidean", "memory_budget": 80000},
        "modes": both("queries"),
    }
    # continuous with exact ties: small-integer embeddings, inner product
    small = {
        "images": rng.integers(-1, 2, size=(n_img, 3)).astype(np.float32),
        "texts": rng.integers(-1, 2, size=(len(c2i), 3)).astype(np.float32),
        "c2i": c2i,
        "labels": labels,
    }

    def add_tie_cases(name: str, arrays: dict[str, Any], measure: str, topk: dict[str, Any]) -> None:
        """Per tie rule, a whole-ranking case (queries sharded) and a top-k one (candidates sharded)."""
        for ties in ("expected", "optimistic", "pessimistic"):
            kwargs = {"measure": measure, "ties": ties}
            full = {"kind": "embeddings", "arrays": arrays, "kwargs": kwargs, "modes": both("queries")}
            cases[f"{name}-full-{ties}"] = full
            cases[f"{name}-topk-{ties}"] = {**full, "kwargs": {**kwargs, **topk}, "modes": both("candidates")}

    add_tie_cases("int-ip", small, "inner_product", {"map_ks": [3, 25]})
    # Hamming: 8-bit codes, so nearly every score is tied with many others
    n_h = 48
    c2i_h = _uneven_caption_map(rng, n_h)
    codes_i = np.where(rng.random((n_h, 8)) < 0.5, -1, 1).astype(np.int8)
    flips = rng.random((len(c2i_h), 8)) < 0.25
    codes_t = np.where(flips, -codes_i[c2i_h], codes_i[c2i_h]).astype(np.int8)
    labels_h = (rng.random((n_h, 4)) < 0.35).astype(np.uint8)
    ham = {"images": codes_i, "texts": codes_t, "c2i": c2i_h, "labels": labels_h}
    add_tie_cases("hamming", ham, "hamming", {"map_ks": [5, 30], "memory_budget": 30000})
    cases["hamming-apk-variant"] = {
        "kind": "embeddings",
        "arrays": ham,
        "kwargs": {"measure": "hamming", "map_ks": [7], "map_variant": "apk"},
        "modes": both("candidates"),
    }
    cases["hamming-dcmh-variant"] = {
        "kind": "embeddings",
        "arrays": ham,
        "kwargs": {"measure": "hamming", "map_ks": [7], "map_variant": "dcmh"},
        "modes": both("queries"),
    }
    packed = {**ham, "images": np.packbits(codes_i > 0, axis=1), "texts": np.packbits(codes_t > 0, axis=1)}
    cases["hamming-packed-forced-queries"] = {
        "kind": "embeddings",
        "arrays": packed,
        "kwargs": {"measure": "hamming", "bits": 8, "map_ks": [5], "memory_budget": 20000},
        "shard": "queries",
        "modes": both("queries"),
    }
    # shards must read codes as one format, the one a single process infers from every row:
    # rank 0's half of these packed bytes holds only 0/1 values (ambiguous on its own)
    odd = {k: v.copy() for k, v in packed.items()}
    odd["images"][: n_h // 2] &= 1
    odd["texts"][: len(c2i_h) // 2] &= 1
    cases["hamming-packed-shard-looks-unpacked"] = {
        "kind": "embeddings",
        "arrays": odd,
        "kwargs": {"measure": "hamming", "map_ks": [5]},
        "modes": both("candidates"),
    }
    mixed = {**ham, "images": np.concatenate([(codes_i[: n_h // 2] > 0).astype(np.int8), codes_i[n_h // 2 :]])}
    cases["hamming-formats-differ-across-shards"] = {
        "kind": "embeddings",
        "arrays": mixed,
        "kwargs": {"measure": "hamming", "map_ks": [5]},
        "error": "NonBinaryCodesError",
    }
    # similarity matrices with ties (small integers), a separate t2i, labels
    n_s = 30
    c2i_s = _uneven_caption_map(rng, n_s)
    i2t = rng.integers(0, 6, size=(n_s, len(c2i_s))).astype(np.float32)
    t2i = rng.integers(0, 6, size=(len(c2i_s), n_s)).astype(np.float32)
    labels_s = (rng.random((n_s, 5)) < 0.3).astype(np.uint8)
    sim = {"i2t": i2t, "t2i": t2i, "c2i": c2i_s, "labels": labels_s}
    cases["similarity-full"] = {"kind": "similarity", "arrays": sim, "kwargs": {}, "modes": both("queries")}
    cases["similarity-topk-pessimistic"] = {
        "kind": "similarity",
        "arrays": sim,
        "kwargs": {"map_ks": [4, 16], "ties": "pessimistic"},
        "modes": both("candidates"),
    }
    no_t2i = {"i2t": i2t.astype(np.int32), "c2i": c2i_s}
    cases["similarity-int-transposed-instance"] = {
        "kind": "similarity",
        "arrays": no_t2i,
        "kwargs": {},
        "modes": both("candidates"),
    }
    # fewer queries than ranks: one image
    one = {"images": img[:1], "texts": txt[:3], "c2i": np.zeros(3, dtype=np.int64), "labels": labels[:1]}
    cases["one-image"] = {
        "kind": "embeddings",
        "arrays": one,
        "kwargs": {},
        "modes": {"i2t": "replicated", "t2i": "queries"},
    }
    # errors must reach every rank (the NaN sits in rank 1's slice only), not hang them
    bad = i2t.copy()
    bad[-1, -1] = np.nan
    cases["nan-candidates"] = {
        "kind": "similarity",
        "arrays": {"i2t": bad, "c2i": c2i_s},
        "kwargs": {},
        "error": "NonFiniteError",
    }
    cases["nan-queries"] = {
        "kind": "similarity",
        "arrays": {"i2t": bad, "c2i": c2i_s, "labels": labels_s},
        "kwargs": {},
        "error": "NonFiniteError",
    }
    cases["forced-candidates-mapn"] = {
        "kind": "embeddings",
        "arrays": cont,
        "kwargs": {},
        "shard": "candidates",
        "error": "OptionError",
    }
    cases["ranks-disagree"] = {
        "kind": "embeddings",
        "arrays": cont,
        "kwargs": {"map_ks": [5]},
        "error": "ConfigError",
        "per_rank_ks": True,
    }
    # a model-backed score source (fusion re-rank): sharded by queries
    cases["rerank"] = {"kind": "rerank", "arrays": cont, "kwargs": {"map_ks": [5, 20, None]}, "modes": both("queries")}
    return cases


class ToyFusion:
    """A stand-in fusion model: rounded products, so re-ranked scores tie often."""

    name = "toy-fusion"

    def score_pairs(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        return torch.round((images * texts).sum(-1) * 2)


def run_case(case: dict[str, Any], arrays: dict[str, np.ndarray], rank: int = 0) -> Any:
    from fico_registry import evaluate_embeddings, evaluate_similarity

    kwargs = {**case["kwargs"], "device": "cpu", "progress": False}
    if case["kind"] == "embeddings":
        if case.get("per_rank_ks"):  # a mistake: the ranks ask for different metrics
            kwargs["recall_ks"] = (1, 5 + rank)
        return evaluate_embeddings(arrays["images"], arrays["texts"], arrays["c2i"], arrays.get("labels"), **kwargs)
    if case["kind"] == "similarity":
        return evaluate_similarity(
            arrays["i2t"], arrays["c2i"], t2i=arrays.get("t2i"), labels=arrays.get("labels"), **kwargs
        )
    # fusion re-rank of a cosine first stage, through the evaluator's own entry point
    from fico_registry.evaluator.evaluate_sources import evaluate_sources
    from fico_registry.evaluator.options import MetricOptions
    from fico_registry.evaluator.query_time import RerankScores
    from fico_registry.evaluator.sources import EmbeddingScores

    img = torch.nn.functional.normalize(torch.from_numpy(arrays["images"]), dim=-1)
    txt = torch.nn.functional.normalize(torch.from_numpy(arrays["texts"]), dim=-1)
    sources = [
        RerankScores(EmbeddingScores(img, txt, "cosine", side), ToyFusion(), img, txt, k=6)
        for side in ("image", "text")
    ]
    return evaluate_sources(
        sources[0],
        sources[1],
        arrays["c2i"].astype(np.int64),
        arrays["labels"],
        MetricOptions(map_ks=kwargs["map_ks"], progress=False),
        device=torch.device("cpu"),
        settings={"measure": "toy re-rank"},
        started=0.0,
    )


MODEL_CASES = {  # evaluate(model, corpus): name -> cache?
    "reference-dual": True,  # sharded encoding through the shared embedding cache
    "reference-hash": False,  # sharded encoding, slices all_gathered
    "scan": False,  # cross-attention: each rank scores its image rows
}


def model_corpus(root: Path) -> Any:
    from fico_registry.data import synthetic

    return synthetic(n_images=20, seed=3, root=root, image_size=32)


def model_report(name: str, corpus_root: Path, cache: Any) -> Any:
    from fico_registry import load_model
    from fico_registry.evaluator.evaluate import evaluate

    corpus = model_corpus(corpus_root)
    model = load_model(name, config="tiny", device="cpu")
    return evaluate(model, corpus, device="cpu", batch_size=4, cache=cache, progress=False)


def worker_main(folder: Path) -> None:
    """What each torchrun rank runs: every case, results written as JSON per rank."""
    from fico_registry.evaluator import sharded as distributed

    rank = int(os.environ["RANK"])
    spec = json.loads((folder / "cases.json").read_text())
    results: dict[str, Any] = {}
    for name, case in spec["cases"].items():
        os.environ["FICO_SHARD"] = case.get("shard", "auto")
        arrays = dict(np.load(folder / f"{name}.npz"))
        try:
            results[name] = {"report": run_case(case, arrays, rank).to_dict()}
        except Exception as exc:
            results[name] = {"error": type(exc).__name__, "message": str(exc)}
    os.environ["FICO_SHARD"] = "auto"
    for name in spec["models"]:
        cache = folder / "cache" if MODEL_CASES[name] else False
        for attempt in ("first", "cached") if cache else ("first",):
            report = model_report(name, folder / "corpus", cache)
            results[f"model:{name}:{attempt}"] = {"report": report.to_dict()}
    results["_rank"] = {
        "rank": distributed.rank(),
        "world_size": distributed.world_size(),
        "main": distributed.is_main_process(),
    }
    (folder / f"rank{rank}.json").write_text(json.dumps(results))


# -- the test ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FICO_NO_PROGRESS": "1",
        "FICO_HOME": str(cwd / "fico-home"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "FICO_SHARD"):
        env.pop(key, None)
    command = [
        str(TORCHRUN),
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        *args,
    ]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    settings = {k: v for k, v in report["settings"].items() if k not in VOLATILE_SETTINGS}
    return {"instance": report["instance"], "category": report.get("category"), "settings": settings}


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _registered(name: str) -> bool:
    from fico_registry.errors import UnknownModelError
    from fico_registry.plugin_api.registry import get_model_spec

    try:
        get_model_spec(name)
    except UnknownModelError:
        return False
    return True


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    if not TORCHRUN.exists():
        pytest.skip("torchrun is not installed beside this Python")
    folder = tmp_path_factory.mktemp("distributed")
    cases = build_cases()
    for name, case in cases.items():
        np.savez(folder / f"{name}.npz", **case["arrays"])
    models = [m for m in MODEL_CASES if _registered(m)]
    spec = {"cases": {n: {k: v for k, v in c.items() if k != "arrays"} for n, c in cases.items()}, "models": models}
    (folder / "cases.json").write_text(json.dumps(spec))
    if models:
        model_corpus(folder / "corpus")  # written once here, read by both ranks
    _torchrun([str(Path(__file__).resolve()), str(folder)], cwd=folder)
    ranks = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]
    return {"folder": folder, "cases": cases, "models": models, "ranks": ranks}


def test_ranks_know_who_they_are(sharded_run):
    assert [r["_rank"] for r in sharded_run["ranks"]] == [
        {"rank": 0, "world_size": 2, "main": True},
        {"rank": 1, "world_size": 2, "main": False},
    ]


def test_array_cases_match_single_process(sharded_run):
    mismatched = []
    for name, case in sharded_run["cases"].items():
        if "error" in case:
            continue
        os.environ.pop("FICO_SHARD", None)
        single = _comparable(_json(run_case(case, case["arrays"]).to_dict()))
        for r, results in enumerate(sharded_run["ranks"]):
            got = results[name]
            assert "report" in got, f"{name} rank {r}: {got}"
            report = got["report"]
            if _comparable(report) != single:
                mismatched.append((name, r, _comparable(report), single))
            assert report["settings"]["world_size"] == 2
            distributed = report["costs"]["distributed"]
            assert distributed["world_size"] == 2 and distributed["sharding"] == case["modes"], name
            assert [entry["rank"] for entry in distributed["per_rank"]] == [0, 1]
            assert all(entry["i2t"] >= 0 and entry["t2i"] >= 0 for entry in distributed["per_rank"])
            resident = [entry["resident"] for entry in distributed["per_rank"]]
            if case["kind"] == "embeddings" and set(case["modes"].values()) == {"candidates"}:
                # memory follows the shard: each rank prepared only its rows of each side
                n_img, n_txt = len(case["arrays"]["images"]), len(case["arrays"]["texts"])
                assert [r["image_rows"] for r in resident] == [n_img // 2, n_img - n_img // 2], name
                assert [r["text_rows"] for r in resident] == [n_txt // 2, n_txt - n_txt // 2], name
            else:
                assert resident == [None, None], name
        assert sharded_run["ranks"][0][name]["report"]["costs"] == sharded_run["ranks"][1][name]["report"]["costs"]
    assert not mismatched, mismatched[0]


def test_failures_reach_every_rank(sharded_run):
    for name, case in sharded_run["cases"].items():
        if "error" not in case:
            continue
        for r, results in enumerate(sharded_run["ranks"]):
            assert results[name].get("error") == case["error"], f"{name} rank {r}: {results[name]}"
    first, second = (results["nan-candidates"]["message"] for results in sharded_run["ranks"])
    assert "NaN" in second and "rank 1" in first  # rank 1 holds the NaN; rank 0 names it
    assert "FICO_SHARD=queries" in sharded_run["ranks"][0]["forced-candidates-mapn"]["message"]
    assert "different inputs" in sharded_run["ranks"][0]["ranks-disagree"]["message"]


def test_evaluate_model_on_corpus_matches_single_process(sharded_run, tmp_path):
    if not sharded_run["models"]:
        pytest.skip("no built-in models registered")
    corpus_root = sharded_run["folder"] / "corpus"
    for name in sharded_run["models"]:
        single = _json(model_report(name, corpus_root, cache=False).to_dict())
        attempts = ("first", "cached") if MODEL_CASES[name] else ("first",)
        for attempt in attempts:
            for r, results in enumerate(sharded_run["ranks"]):
                report = results[f"model:{name}:{attempt}"]["report"]
                assert _comparable(report) == _comparable(single), f"{name} {attempt} rank {r}"
                assert report["corpus"] == single["corpus"]
                costs = report["costs"]
                per_rank = costs["distributed"]["per_rank"]
                assert len(per_rank) == 2 and all("encode_images_s" in e and "i2t" in e for e in per_rank)
                encoded = [e["encoded_images"] for e in per_rank]
                if attempt == "cached":
                    assert encoded == [0, 0] and costs["encode"]["images"]["from_cache"]
                else:
                    assert sum(encoded) == single["costs"]["encode"]["images"]["items"] and min(encoded) > 0
                if "query_time" in single["costs"]:
                    assert costs["query_time"]["pairs"] == single["costs"]["query_time"]["pairs"]
                    assert [e["query_time_pairs"] > 0 for e in per_rank] == [True, True]
                    # each rank kept its image rows (i2t) and, after the all_to_all, its captions' t2i rows
                    held = [e["resident"] for e in per_rank]
                    assert sum(h["image_rows"] for h in held) == single["corpus"]["n_images"]
                    assert sum(h["text_rows"] for h in held) == single["corpus"]["n_texts"]
                    assert costs["distributed"]["sharding"] == {"i2t": "queries", "t2i": "queries"}


def test_torchrun_cli_evaluate_embeddings(tmp_path):
    if not TORCHRUN.exists():
        pytest.skip("torchrun is not installed beside this Python")
    from fico_registry import evaluate_embeddings

    case = build_cases()["hamming-full-expected"]
    files = {}
    for key in ("images", "texts", "c2i", "labels"):
        files[key] = tmp_path / f"{key}.npy"
        np.save(files[key], case["arrays"][key])
    out = tmp_path / "report.json"
    done = _torchrun(
        [
            "-m",
            "fico_registry",
            "evaluate-embeddings",
            "--images",
            str(files["images"]),
            "--texts",
            str(files["texts"]),
            "--caption-map",
            str(files["c2i"]),
            "--labels",
            str(files["labels"]),
            "--measure",
            "hamming",
            "--no-progress",
            "--json",
            "-o",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert done.stdout.count('"instance"') == 1  # only rank 0 prints
    got = json.loads(out.read_text())
    a = case["arrays"]
    single = _json(
        evaluate_embeddings(a["images"], a["texts"], a["c2i"], a["labels"], measure="hamming", device="cpu").to_dict()
    )
    assert _comparable({**got, "settings": {k: v for k, v in got["settings"].items() if k != "inputs"}}) == _comparable(
        single
    )
    assert got["costs"]["distributed"]["world_size"] == 2


def test_single_process_is_untouched(monkeypatch):
    from fico_registry import evaluate_embeddings
    from fico_registry.evaluator import sharded as distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    case = build_cases()["cosine-topk"]
    a = case["arrays"]
    report = evaluate_embeddings(a["images"], a["texts"], a["c2i"], a["labels"], map_ks=(5,), device="cpu")
    assert "world_size" not in report.settings and report.costs is None
    assert not distributed.active() and distributed.sharding() is None
    assert distributed.split(10, 3, 0) == (0, 3) and distributed.split(10, 3, 2) == (6, 10)
    assert distributed.split(10, 3, 1, align=4) == (4, 8) and distributed.split(2, 4, 3) == (1, 2)


def test_world_size_without_rendezvous_is_a_clear_error(monkeypatch):
    from fico_registry.errors import ConfigError
    from fico_registry.evaluator import sharded as distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        distributed.init_if_launched("cpu")
    with distributed.local():  # switched off: single process whatever the environment says
        assert distributed.init_if_launched("cpu") is False


if __name__ == "__main__":  # a torchrun rank (see sharded_run)
    worker_main(Path(sys.argv[1]))
