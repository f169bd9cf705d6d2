"""fico_registry.training: crash-safe checkpoints, resuming, model selection, run records, `fico train`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fico_registry.errors import CheckpointError, ConfigError, OptionError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint
from fico_registry.training import common
from fico_registry.training.common import Checkpointer, atomic_save, run_record, validation_rsum


# -- atomic_save / Checkpointer ----------------------------------------------------------------------
def test_atomic_save_survives_a_crash_mid_save(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pth.tar"
    atomic_save({"epoch": 1, "w": torch.ones(3)}, target)
    real_save = torch.save

    def dying_save(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a zip")  # some bytes reach the disk, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2, "w": torch.zeros(3)}, target)
    monkeypatch.setattr(torch, "save", real_save)
    state = Checkpointer(tmp_path).latest()
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth.tar"]  # no temp file left behind


def test_checkpointer_keeps_last_and_best(tmp_path):
    ckpt = Checkpointer(tmp_path / "run")
    assert ckpt.latest() is None
    opt = argparse.Namespace(margin=0.2)
    ckpt.save(0, {"epoch": 1, "model": [{"w": torch.ones(2)}], "opt": opt, "best_rsum": 10.0}, is_best=True)
    last = ckpt.save(1, {"epoch": 2, "model": [{"w": torch.zeros(2)}], "opt": opt, "best_rsum": 10.0}, is_best=False)
    assert last == ckpt.last_path
    assert ckpt.latest()["epoch"] == 2
    best = load_torch_checkpoint(ckpt.best_path)
    assert best["epoch"] == 1 and torch.equal(best["model"][0]["w"], torch.ones(2))
    assert os.stat(ckpt.last_path).st_mode & 0o044  # readable like any file open() makes, not mkstemp's 0600


def test_checkpointer_refuses_unsafe_pickles(tmp_path):
    torch.save({"epoch": 1, "evil": Path("/x")}, tmp_path / "checkpoint.pth.tar")
    with pytest.raises(CheckpointError, match="allow-list"):
        Checkpointer(tmp_path).latest()


def test_checkpointer_rejects_non_dict_state(tmp_path):
    with pytest.raises(ConfigError):
        Checkpointer(tmp_path).save(0, [1, 2], is_best=False)


# -- model selection and records ------------------------------------------------------------------------
def test_validation_rsum_sums_recalls_in_percent():
    from fico_registry.evaluator.report import Report

    inst = {"i2t": {"R@1": 0.1, "R@5": 0.2, "R@10": 0.3, "MedR": 4}, "t2i": {"R@1": 0.05, "R@5": 0.15, "R@10": 0.25}}
    report = Report(instance=inst, category=None, settings={})
    assert validation_rsum(report) == pytest.approx(105.0)
    assert validation_rsum(report.to_dict()) == pytest.approx(105.0)
    with pytest.raises(ConfigError, match="R@5"):
        validation_rsum({"instance": {"i2t": {"R@1": 0.1}, "t2i": {}}})


def test_run_record_names_data_seed_versions_hardware():
    from fico_registry.data import synthetic

    train = synthetic(n_images=6, split="train")
    val = synthetic(n_images=4, split="val")
    record = run_record(
        model="m", train_corpus=train, val_corpus=val, seed=3, epochs=2, options={"a": 1}, started=10.0, finished=12.5
    )
    assert record["train"]["content_hash"] == train.content_hash and record["val"]["split"] == "val"
    assert record["train"]["features"]["regions"]
    assert record["seed"] == 3 and record["epochs"] == 2 and record["seconds"] == 2.5
    assert record["versions"]["torch"] and record["hardware"]["cpus"]
    json.dumps(record)


def test_shard_gives_every_rank_the_same_number_of_items():
    order = np.arange(10)
    parts = [common.shard(order, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert sorted(np.concatenate(parts)) == list(range(9))
    assert common.shard(order, 0, 1) is order


def test_autocast_rules():
    with common.autocast("cpu", "fp32"):
        pass
    with pytest.raises(ConfigError, match="CUDA"):
        common.autocast("cpu", "fp16")
    with pytest.raises(ConfigError):
        common.autocast("cpu", "fp8")


# -- the CLI's argument handling ----------------------------------------------------------------------------
def test_settings_split_recipe_options_from_config_keys():
    from fico_registry.cli.train import parse_settings

    options, config = parse_settings(
        ("margin=0.3", "vocab=build", "config.final_dims=128", 'config.trans_cfg={"a": 1}')
    )
    assert options == {"margin": 0.3, "vocab": "build"}
    assert config == {"final_dims": 128, "trans_cfg": {"a": 1}}
    with pytest.raises(OptionError):
        parse_settings(("margin",))


def test_selection_on_test_split_is_refused():
    from fico_registry.cli.train import load_splits

    with pytest.raises(OptionError, match="test split"):
        load_splits("synthetic", None, "train", "test", {}, {})
    with pytest.raises(OptionError, match="differ"):
        load_splits("synthetic", None, "train", "train", {}, {})


# -- fico train adv-64 end to end (needs the fico-adv plugin) -----------------------------------------------
def _fico(*args: str):
    from fico_registry.cli.main import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_fico_train_adv64_tiny_writes_resumes_and_evaluates(tmp_path):
    pytest.importorskip("fico_adv")
    from fico_registry import evaluate, load_model
    from fico_registry.data import synthetic

    out = tmp_path / "run"
    base = (
        "train",
        "adv-64",
        "--config",
        "tiny",
        "--train-images",
        "40",
        "--val-images",
        "12",
        "--set",
        "batch_size=16",
        "--out",
        str(out),
        "--no-progress",
    )
    _fico(*base, "--epochs", "2")
    record = json.loads((out / "run.json").read_text())
    assert record["epochs_run"] == 2 and [h["epoch"] for h in record["history"]] == [1, 2]
    assert record["options"]["batch_size"] == 16 and record["options"]["config"] == "tiny"
    assert record["train"]["split"] == "train" and record["val"]["split"] == "val"
    assert (out / "checkpoint.pth.tar").is_file() and Path(record["checkpoint"]).is_file()
    first_best = record["best_epoch"]

    _fico(*base, "--epochs", "3")  # resumes: only epoch 3 runs
    record = json.loads((out / "run.json").read_text())
    assert record["epochs_run"] == 1 and [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert record["best_epoch"] in (first_best, 3)
    _fico(*base, "--epochs", "3")  # nothing left to do
    assert json.loads((out / "run.json").read_text())["epochs_run"] == 0

    # the original layout, loaded strictly by the adapter, evaluated by the core
    state = load_torch_checkpoint(record["checkpoint"])
    assert {"epoch", "model", "best_rsum", "opt", "Eiters"} <= set(state) and len(state["model"]) == 3
    assert vars(state["opt"])["final_dims"] == 64
    model = load_model("adv-64", config="tiny", checkpoint=record["checkpoint"])
    report = evaluate(model, synthetic(n_images=10, split="test"), cache=False)
    assert 0 <= report.instance["i2t"]["R@10"] <= 1 and report.category is not None

    # the printed command works as it stands
    command = shlex.split(record["evaluate"])
    assert command[:2] == ["fico", "evaluate"]
    result = _fico(*command[1:], "--dataset-option", "n_images=10", "--no-cache", "--json")
    assert json.loads(result.output)["instance"]["t2i"]["R@1"] >= 0


def test_fico_train_rejects_unknown_options(tmp_path):
    pytest.importorskip("fico_adv")
    from fico_registry.cli.main import cli

    result = CliRunner().invoke(
        cli, ["train", "adv-64", "--config", "tiny", "--set", "no_such=1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "no_such" in result.output


# -- torch.distributed: the global-batch loss over ranks has the single-process gradient --------------------
def _ddp_worker(rank: int, world: int, port: int, folder: str) -> None:
    import torch.distributed as dist
    from torch import nn

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    net, ref = nn.Linear(6, 4), nn.Linear(6, 4)
    ref.load_state_dict(net.state_dict())
    x, y = torch.randn(8, 6), torch.randn(8, 4)

    def in_batch_loss(a, b):  # hardest negative: every item of the batch matters to every other
        scores = a @ b.T
        return (0.2 + scores - scores.diag().view(-1, 1)).clamp(min=0).max(dim=1).values.sum()

    ddp = nn.parallel.DistributedDataParallel(net)
    gathered = common.all_gather_with_grad(ddp(x[rank * 4 : (rank + 1) * 4]))
    in_batch_loss(gathered, y).backward()
    in_batch_loss(ref(x), y).backward()
    Path(folder, f"rank{rank}.txt").write_text(str(float((net.weight.grad - ref.weight.grad).abs().max())))
    dist.destroy_process_group()


@pytest.mark.slow
def test_all_gather_with_grad_under_ddp_matches_one_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    diffs = [float((tmp_path / f"rank{r}.txt").read_text()) for r in range(2)]
    assert max(diffs) < 1e-5


def test_show_recipe_prints_defaults_and_source():
    pytest.importorskip("fico_adv")
    result = _fico("train", "adv-64", "--show-recipe")
    recipe = json.loads(result.output)
    assert recipe["factory"] == "fico_adv.train:train" and recipe["defaults"]["margin"] == 0.2
    assert "train_reranking.py" in recipe["paper_recipe"]


def test_fico_train_with_a_changed_config_writes_config_json(tmp_path):
    pytest.importorskip("fico_adv")
    from fico_registry import load_model

    out = tmp_path / "run"
    _fico(
        "train", "adv-64", "--config", "tiny", "--set", "vocab=build", "--set", "config.cnn_channels=4",
        "--train-images", "20", "--val-images", "8", "--epochs", "1", "--set", "batch_size=16",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    record = json.loads((out / "run.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert record["config"] == config and config["cnn_channels"] == 4 and (out / "vocab.txt").is_file()
    assert record["evaluate"].startswith("fico evaluate adv-64 --config ") and "config.json" in record["evaluate"]
    model = load_model("adv-64", config=config, checkpoint=record["checkpoint"])
    assert model.encode_texts(["a red circle"]).shape == (1, 64)


# -- --features: precomputed feature files for train, val and test, from the command line ----------------
def test_feature_files_parse_and_refuse_clearly(tmp_path):
    from fico_registry.data import synthetic
    from fico_registry.data.attach import FeatureFile, attach_feature_files, parse_feature_files

    assert parse_feature_files(["vgg19-fc7=f/{split}.npy", "text:doc2vec=d.npy"]) == [
        FeatureFile("vgg19-fc7", "f/{split}.npy", "image"),
        FeatureFile("doc2vec", "d.npy", "text"),
    ]
    for bad in ("vgg19-fc7", "=x.npy", "audio:x=y.npy", "x="):
        with pytest.raises(OptionError, match="NAME=PATH"):
            parse_feature_files([bad])
    corpus = synthetic(n_images=6, split="test", root=tmp_path / "data")
    with pytest.raises(OptionError, match="does not exist"):
        attach_feature_files(corpus, parse_feature_files([f"vgg19-fc7={tmp_path}/{{split}}.npy"]), "test")
    np.save(tmp_path / "test.npy", np.ones((6, 4), dtype=np.float32))
    attached = attach_feature_files(corpus, parse_feature_files([f"vgg19-fc7={tmp_path}/{{split}}.npy"]), "test")
    assert attached.features["vgg19-fc7"].count == 6


def test_fico_train_and_evaluate_read_feature_files(tmp_path):
    """UCCH on pooled-region files given by --features: no Python needed, and the printed command evaluates."""
    pytest.importorskip("fico_ucch")
    from fico_registry.data import synthetic

    root, feats = tmp_path / "data", tmp_path / "pooled"
    feats.mkdir()
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        regions = synthetic(n_images=n, split=split, root=root / split).features["regions"].rows(np.arange(n))
        np.save(feats / f"{split}.npy", np.concatenate([regions.mean(1), regions.max(1)], 1).astype(np.float32))
    out = tmp_path / "run"
    _fico(
        "train", "ucch", "--config", "tiny", "--root", str(root), "--train-images", "24", "--val-images", "8",
        "--epochs", "1", "--set", "batch_size=8", "--set", "K=8", "--features", f"vgg19-fc7={feats}/{{split}}.npy",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    record = json.loads((out / "run.json").read_text())
    assert record["dataset"]["features"] == [f"vgg19-fc7={feats}/{{split}}.npy"]
    assert record["train"]["features"]["vgg19-fc7"]  # the file's fingerprint travels in the run record
    command = shlex.split(record["evaluate"])
    assert command[:3] == ["fico", "evaluate", "ucch"] and "--features" in command
    result = _fico(*command[1:], "--dataset-option", "n_images=8", "--no-cache", "--json")
    assert 0 <= json.loads(result.output)["category"]["i2t"]["mAP@N"] <= 1
