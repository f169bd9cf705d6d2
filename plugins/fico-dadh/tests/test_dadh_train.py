"""fico train dadh: the losses, a few-second run, strict reload of GEN_module.pth, resuming, evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fico_features import testing as hash_testing

from fico_registry import load_model
from fico_registry.errors import ConfigError
from fico_registry.plugin_api.training import rank_testing

OPTIONS = {"config": "tiny", "epochs": 3, "batch_size": 8, "eval_batch_size": 16}
corpora, on = hash_testing.training_fixtures("dadh", rank_testing.synthetic_splits, train=41)


def test_registered_trainer():
    hash_testing.check_registered_trainer("dadh", lr=0.00005, epochs=300, margin=0.4)


def test_generator_lr_decays_after_epoch_zero_and_every_hundred():
    from fico_dadh.train import Options, generator_lr

    opts = Options.from_dict({})
    assert generator_lr(0, opts) == pytest.approx(5e-5)
    assert generator_lr(1, opts) == generator_lr(100, opts) == pytest.approx(4e-5)
    assert generator_lr(101, opts) == pytest.approx(3.2e-5)
    assert generator_lr(100_000, opts) == pytest.approx(1e-6)


def test_triplet_loss_against_a_direct_transcription():
    """triplet_loss.py written out with loops: NDCG-weighted hinge over (anchor, positive, negative)."""
    from fico_dadh.train import triplet_loss

    torch.manual_seed(0)
    src, tgt = torch.randn(5, 6), torch.randn(5, 6)
    labels = torch.tensor([[1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 1], [1, 1, 0]], dtype=torch.float32)
    flag, margin = 1.0, 0.4
    shared = (labels @ labels.T).tolist()
    total_weighted, total_plain = 0.0, 0.0
    for a in range(5):
        ideal = sorted(shared[a], reverse=True)
        idcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(ideal))
        for p in range(5):
            for q in range(5):
                if not (shared[a][p] > 0 and shared[a][q] == 0):
                    continue
                d_ap = max(0.0, 1 - float(torch.nn.functional.cosine_similarity(src[a], tgt[p], dim=0)))
                d_aq = max(0.0, 1 - float(torch.nn.functional.cosine_similarity(src[a], tgt[q], dim=0)))
                hinge = d_ap - d_aq + margin
                w = ((2 ** shared[a][p] - 1) - (2 ** shared[a][q] - 1)) / idcg * (flag + 0.1)
                total_weighted += max(0.0, 10 * w * (flag + 0.1) * hinge)
                total_plain += max(0.0, (flag + 0.1) * hinge)
    got = triplet_loss(src, tgt, labels, margin=margin, alpha=10, flag=flag)
    assert float(got) == pytest.approx(total_weighted, rel=1e-5)
    assert float(triplet_loss(src, tgt, labels, margin=margin, alpha=1, flag=flag)) == pytest.approx(
        total_plain, rel=1e-5
    )


def test_trains_reloads_strictly_resumes_and_evaluates(corpora, tmp_path, on):
    from fico_dadh.train import train

    out = tmp_path / "run"
    record = hash_testing.check_training_run(train, on, out, OPTIONS, best="GEN_module.pth", last="GEN_module_last.pth")
    best = out / "GEN_module.pth"
    norm = json.loads((out / "image_norm.json").read_text())
    assert norm["std"] > 0 and norm["mean"] == pytest.approx(record["image_norm"]["mean"])

    raw = torch.load(best, weights_only=True)  # main.py's save_model: the generator's state dict, nothing else
    assert all(k.startswith(("image_module.", "text_module.", "hash_module.")) for k in raw)
    model = load_model("dadh", config="tiny", checkpoint=best)
    assert model.encoder.bits == 16 and (model.encoder.image_mean, model.encoder.image_std) == (
        norm["mean"],
        norm["std"],
    )
    assert set(model.encoder.input_pipelines) == {"vgg19-fc7", "doc2vec"}

    a, b = hash_testing.resumed_checkpoints(train, on, out, tmp_path / "split", OPTIONS, last="GEN_module_last.pth")
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name

    report = hash_testing.evaluate_with_run_inputs(model, out, corpora["test"], tmp_path / "features")
    assert report["category"]["t2i"]["mAP@N"] is not None and 0 <= report["instance"]["i2t"]["R@10"] <= 1


def test_needs_labels(corpora, tmp_path, on):
    from dataclasses import replace

    from fico_dadh.train import train

    unlabelled = replace(corpora["train"], labels=None, class_names=None)
    with pytest.raises(ConfigError, match="supervised"):
        train(model="dadh", train=unlabelled, val=corpora["val"], out=tmp_path, options=OPTIONS)
    with pytest.raises(ConfigError, match="unknown DADH training options"):
        train(**on, out=tmp_path, options={**OPTIONS, "bit": 64})


def test_world_size_without_a_process_group_is_refused(on, tmp_path):
    from fico_dadh.train import train

    run = {**on, "out": tmp_path, "options": OPTIONS}
    # torchrun's WORLD_SIZE, but no group joined by `fico train`
    rank_testing.check_refuses_ranks_without_group(train, run)


def test_bf16_autocast_trains_and_saves_float32(corpora, tmp_path, on):
    from fico_dadh.train import train

    state = hash_testing.check_bf16_run(train, on, tmp_path, OPTIONS)
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())


# -- torchrun: two gloo ranks train what one process trains ---------------------------------------------------
DDP_OPTIONS = {**OPTIONS, "epochs": 2}  # batch 8 = 2 ranks x 4; the 41st item of each epoch is dropped by both


def _dense_image_features(corpora: dict, folder: Path) -> dict:
    """The corpora with dense random fc7-sized image features attached (the recipe uses attached features).

    The synthetic corpus's VGG features are sparse (ReLU): a feature that is zero over a whole batch gives
    its weight column nothing but float noise as gradient, which Adam turns into steps of about lr that later
    batches then see, so ANY change of summation order (one process or two) drifts by ~1e-4 within an epoch.
    """
    out = {}
    for seed, split in enumerate(("train", "val")):
        path = folder / f"dense-fc7-{split}.npy"
        np.save(path, np.random.default_rng(seed).random((corpora[split].n_images, 4096), dtype=np.float32) + 0.1)
        out[split] = corpora[split].with_features("vgg19-fc7", path, modality="image")
    return out


def _cancelled_by_batchnorm(name: str, state: dict) -> bool:
    """A Linear bias that the next BatchNorm's mean subtraction cancels, or a running mean it shifts."""
    prefix, index, leaf = name.rsplit(".", 2)
    return leaf == "running_mean" or (leaf == "bias" and f"{prefix}.{int(index) + 1}.running_mean" in state)


@pytest.mark.slow
def test_two_gloo_ranks_train_what_one_process_trains(corpora, tmp_path):
    """DDP + BatchNorm over the global batch + all-gathered losses; the discriminators, B and H updated from the
    global batch on every rank: the generator, discriminators and codes of one process with the whole batch."""
    from fico_dadh.train import train

    data = _dense_image_features(corpora, tmp_path)
    # a run, and one of 1 epoch resumed to 2 (every rank reads the last checkpoint)
    common = {"model": "dadh", "train": data["train"], "val": data["val"]}
    runs = [{**common, "out": tmp_path / "ddp", "options": DDP_OPTIONS}]
    runs += [{**common, "out": tmp_path / "ddp-resumed", "options": {**DDP_OPTIONS, "epochs": e}} for e in (1, 2)]
    writes = rank_testing.train_on_ranks(runs, watch=tmp_path)
    # rank 1 wrote nothing: neither into the run folders nor into FICO_HOME (rank 0 fills the caches)
    assert writes[1] == []
    train(model="dadh", train=data["train"], val=data["val"], out=tmp_path / "single", options=DDP_OPTIONS)

    ddp, single = (torch.load(tmp_path / run / "fico_resume.pth", weights_only=True) for run in ("ddp", "single"))
    assert ddp["epoch"] == single["epoch"] == 2
    # a bias before BatchNorm has no gradient, only float noise that Adam turns into steps of about lr: those
    # (and the running means they shift) may differ by a few lr per step, whatever the summation order
    steps = DDP_OPTIONS["epochs"] * (41 // 8)
    noise = 2 * 5e-5 * steps  # each run moves such a parameter by up to about lr (5e-5) per step, either way
    for key in ("generator", "discriminator"):
        for name, tensor in single[key].items():
            atol = noise if _cancelled_by_batchnorm(name, single[key]) else 1e-5
            torch.testing.assert_close(ddp[key][name], tensor, atol=atol, rtol=1e-5, msg=f"{key} {name}")
    for key in ("H_i", "H_t"):
        torch.testing.assert_close(ddp[key], single[key], atol=1e-5, rtol=1e-5)
    assert torch.equal(ddp["B"], single["B"])
    assert [h["loss"] for h in ddp["history"]] == pytest.approx([h["loss"] for h in single["history"]], rel=1e-5)
    raw = torch.load(tmp_path / "ddp" / "GEN_module_last.pth", weights_only=True)  # main.py's layout, no DDP prefix
    assert list(raw) == list(single["generator"]) and all(torch.equal(raw[k], ddp["generator"][k]) for k in raw)
    assert {p.name for p in (tmp_path / "ddp").iterdir()} == {p.name for p in (tmp_path / "single").iterdir()}
    resumed = torch.load(tmp_path / "ddp-resumed" / "fico_resume.pth", weights_only=True)  # 1 epoch, then a second
    for key in ("generator", "discriminator"):
        assert all(torch.equal(tensor, resumed[key][name]) for name, tensor in ddp[key].items()), key
    assert all(torch.equal(resumed[key], ddp[key]) for key in ("B", "H_i", "H_t"))
