"""fico train ucch: the losses, a few-second run, strict reload of its `.t7`, resuming, evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fico_features import testing as hash_testing

from fico_registry import load_model
from fico_registry.errors import ConfigError
from fico_registry.plugin_api.training import rank_testing

OPTIONS = {"config": "tiny", "epochs": 3, "batch_size": 8, "K": 16, "eval_batch_size": 16}
corpora, on = hash_testing.training_fixtures("ucch", rank_testing.synthetic_splits, train=40)


def test_registered_trainer():
    hash_testing.check_registered_trainer("ucch", alpha=0.9, K=4096, epochs=100)


def test_learning_rate_follows_ucch_scheduler_stepping():
    from fico_ucch.train import Options, learning_rate

    linear = Options.from_dict({})
    assert [learning_rate(e, linear) for e in (0, 30, 31, 60, 61, 91)] == pytest.approx(
        [1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-7]
    )
    cos = Options.from_dict({"ls": "cos", "epochs": 10})
    assert learning_rate(0, cos) == learning_rate(1, cos) == pytest.approx(1e-4)
    assert learning_rate(6, cos) == pytest.approx(0.5e-4)
    with pytest.raises(ConfigError, match="unknown UCCH training options"):
        Options.from_dict({"bits": 64})


def test_ranking_loss_against_a_direct_transcription():
    from fico_ucch.train import cross_modal_ranking_loss

    torch.manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    v = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    s = (u @ v.T).double().tolist()
    total = 0.0
    for i in range(5):  # rows: image i ranks the captions
        row = [s[i][j] if s[i][j] >= s[i][i] - 0.2 else s[i][j] - 1.0 for j in range(5)]
        total += (-row[i] + math.log(sum(math.exp(x) for x in row)) + 0.2) / 5
    for j in range(5):  # columns: caption j ranks the images
        col = [s[i][j] if s[i][j] >= s[j][j] - 0.2 else s[i][j] - 1.0 for i in range(5)]
        total += (-col[j] + math.log(sum(math.exp(x) for x in col)) + 0.2) / 5
    assert float(cross_modal_ranking_loss(u, v, 0.2, 1.0)) == pytest.approx(total, rel=1e-5)


def test_code_memory_scores_and_updates():
    from fico_ucch.train import CodeMemory, nce_softmax_loss

    torch.manual_seed(0)
    memory = CodeMemory(10, 8, K=4, T=0.9, momentum=0.4, device="cpu")
    assert torch.allclose(memory.memory.norm(dim=1), torch.ones(10))
    assert set(memory.memory.sign().unique().tolist()) <= {-1.0, 1.0}
    u = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    v = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    index = torch.tensor([2, 5, 7])
    out_u, _ = memory.scores(u, v, index, warm=False)  # warm-up: in-batch codes, memory := normalise((u+v)/2)
    assert out_u.shape == (3, 3)
    own = ((u + v) / 2).sign()
    assert torch.allclose(out_u[:, 0], (own * u).sum(1) / (0.9 * math.sqrt(8)))
    assert torch.allclose(memory.memory[index], torch.nn.functional.normalize((u + v) / 2, dim=1))
    before = memory.memory[index].clone()
    out_u, _ = memory.scores(u, v, index, warm=True)  # memory: K = 4 draws, own entry first, momentum 0.4
    assert out_u.shape == (3, 5)
    assert torch.allclose(out_u[:, 0], (before.sign() * u).sum(1) / (0.9 * math.sqrt(8)))
    moved = before * 0.4 + torch.nn.functional.normalize((u + v) / 2, dim=1) * 0.6
    assert torch.allclose(memory.memory[index], torch.nn.functional.normalize(moved, dim=1))
    assert float(nce_softmax_loss(torch.tensor([[2.0, 0.0, 0.0]]))) == pytest.approx(
        -math.log(math.exp(2) / (math.exp(2) + 2))
    )


def test_trains_reloads_strictly_resumes_and_evaluates(corpora, tmp_path, on):
    from fico_ucch.train import train

    out = tmp_path / "run"
    names = {"best": "vgg11_16_best_checkpoint.t7", "last": "vgg11_16_last_checkpoint.t7"}
    record = hash_testing.check_training_run(train, on, out, OPTIONS, **names)
    best = out / names["best"]
    assert (
        0 <= record["best_epoch"] <= 2
        and (out / "inputs.json").is_file()
        and (out / "doc2vec" / "doc2vec.json").is_file()
    )

    # the original layout: what UCCH.py saves, loaded strictly by the adapter
    raw = torch.load(best, weights_only=True)
    assert {
        "image_model_state_dict",
        "text_model_state_dict",
        "optimizer_state_dict",
        "Avg",
        "Img2Txt",
        "Txt2Img",
        "epoch",
    } <= set(raw)
    assert raw["epoch"] == record["best_epoch"]
    model = load_model("ucch", config="tiny", checkpoint=best)
    assert model.encoder.bits == 16 and set(model.encoder.input_pipelines) == {"vgg19-fc7", "doc2vec"}
    assert model.encoder.input_pipelines["doc2vec"]["model"] == str((out / "doc2vec").resolve())

    # resume: 2 epochs, then a third, equals 3 in one go
    a, b = hash_testing.resumed_checkpoints(train, on, out, tmp_path / "split", OPTIONS, last=names["last"])
    for key in ("image_model_state_dict", "text_model_state_dict"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    assert torch.equal(a["fico_resume"]["memory"], b["fico_resume"]["memory"])

    # evaluation with the run's own feature pipelines (Doc2Vec fitted on the training captions)
    report = hash_testing.evaluate_with_run_inputs(model, out, corpora["test"], tmp_path / "features")
    assert report["category"]["i2t"]["mAP@N"] is not None and 0 <= report["instance"]["t2i"]["R@10"] <= 1


def test_option_checks(on, tmp_path):
    from fico_ucch.train import train

    with pytest.raises(ConfigError, match="exceeds the 40 training images"):
        train(**on, out=tmp_path, options={**OPTIONS, "batch_size": 64})
    np.testing.assert_equal(OPTIONS["config"], "tiny")


def test_world_size_without_a_process_group_is_refused(on, tmp_path):
    from fico_ucch.train import train

    run = {**on, "out": tmp_path, "options": OPTIONS}
    # torchrun's WORLD_SIZE, but no group joined by `fico train`
    rank_testing.check_refuses_ranks_without_group(train, run)


def test_bf16_autocast_trains_and_saves_float32(on, tmp_path):
    from fico_ucch.train import train

    state = hash_testing.check_bf16_run(train, on, tmp_path, OPTIONS)
    for key in ("image_model_state_dict", "text_model_state_dict"):
        assert all(t.dtype == torch.float32 for t in state[key].values())
    assert state["fico_resume"]["memory"].dtype == torch.float32


# -- torchrun: two gloo ranks train what one process trains ---------------------------------------------------
DDP_OPTIONS = {**OPTIONS, "epochs": 2}  # epoch 0: in-batch codes (warm-up); epoch 1: memory draws and momentum


@pytest.mark.slow
def test_two_gloo_ranks_train_what_one_process_trains(tmp_path, on):
    """batch 8 = 2 ranks x 4: DDP + all-gathered losses + memory updated from the global batch on every rank
    give the weights and the code memory of one process with the whole batch."""
    from fico_ucch.train import train

    # a run, and one of 1 epoch resumed to 2 (every rank reads the last checkpoint)
    runs = [{**on, "out": tmp_path / "ddp", "options": DDP_OPTIONS}]
    runs += [{**on, "out": tmp_path / "ddp-resumed", "options": {**DDP_OPTIONS, "epochs": e}} for e in (1, 2)]
    writes = rank_testing.train_on_ranks(runs, watch=tmp_path)
    # rank 1 wrote nothing: neither into the run folders nor into FICO_HOME (rank 0 fills the caches)
    assert writes[1] == []
    train(**on, out=tmp_path / "single", options=DDP_OPTIONS)

    name = "vgg11_16_last_checkpoint.t7"
    ddp, single = (torch.load(tmp_path / run / name, weights_only=True) for run in ("ddp", "single"))
    assert ddp["epoch"] == single["epoch"] == 1
    for key in ("image_model_state_dict", "text_model_state_dict"):
        for k, tensor in single[key].items():
            torch.testing.assert_close(ddp[key][k], tensor, atol=1e-5, rtol=1e-5, msg=f"{key} {k}")
    torch.testing.assert_close(ddp["fico_resume"]["memory"], single["fico_resume"]["memory"], atol=1e-5, rtol=1e-5)
    losses = [[h["loss"] for h in run["fico_resume"]["history"]] for run in (ddp, single)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert {p.name for p in (tmp_path / "ddp").iterdir()} == {p.name for p in (tmp_path / "single").iterdir()}
    resumed = torch.load(tmp_path / "ddp-resumed" / name, weights_only=True)  # 1 epoch, then a second one
    for key in ("image_model_state_dict", "text_model_state_dict"):
        assert all(torch.equal(tensor, resumed[key][k]) for k, tensor in ddp[key].items()), key
    assert torch.equal(resumed["fico_resume"]["memory"], ddp["fico_resume"]["memory"])
