"""ADV training on 2 torch.distributed ranks (gloo, CPU) gives the weights of one process with the whole batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fico_adv import train as T

from fico_registry.plugin_api.checkpoints import load_torch_checkpoint
from fico_registry.plugin_api.training import rank_testing

# dropout off: each rank draws its own dropout masks, so with dropout no two runs share a gradient;
# adversarial captions on: their loss is a per-rank sum that the recipe scales by the rank count
OPTIONS = {
    "config": "tiny", "batch_size": 16, "seed": 0, "dropout": 0.0,
    "need_adversary_data": 1, "adversary_num": 2, "adversary_type": "mixed",
}  # fmt: skip


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    # 120 captions: 7 batches of 16 and a last one of 8 (4 per rank)
    splits = rank_testing.synthetic_splits(tmp_path_factory.mktemp("synthetic"), train=24, val=8)
    return splits["train"], splits["val"]


@pytest.mark.slow
def test_two_ranks_train_like_one_process(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    """Triplet + angular (global batch), concept BCE and adversary loss (per rank), weight norms.

    The attention key biases are the exception to 1e-5: a key bias adds the same q.b to every score
    of a query, which softmax ignores, so their gradient is zero but for rounding noise, which Adam
    normalises into steps of up to the learning rate in either direction.
    """
    train, val = corpora
    single = T.train(model="adv-64", train=train, val=val, out=tmp_path / "single", options={**OPTIONS, "epochs": 2})
    out = tmp_path / "sharded"
    # 1 epoch, then resumed to 2 (every rank reads rank 0's checkpoint)
    run = {"model": "adv-64", "train": train, "val": val, "out": out}
    writes = rank_testing.train_on_ranks([{**run, "options": {**OPTIONS, "epochs": e}} for e in (1, 2)], watch=out)
    assert writes[1] == []  # only rank 0 wrote the run folder
    a = load_torch_checkpoint(single["last_checkpoint"])
    b = load_torch_checkpoint(out / "checkpoint.pth.tar")
    assert a["Eiters"] == b["Eiters"] == 2 * 8 and a["epoch"] == b["epoch"] == 2 and len(a["model"]) == 3
    noise_bound = a["Eiters"] * T.Options.from_dict(OPTIONS).learning_rate
    for part_a, part_b in zip(a["model"], b["model"], strict=True):
        assert part_a.keys() == part_b.keys()
        for key, value in part_a.items():
            atol = noise_bound if key.endswith("attention.self.key.bias") else 1e-5
            torch.testing.assert_close(part_b[key], value, rtol=0, atol=atol, msg=key)
    # the logged epoch losses are the global batch's, per-rank terms (concept, adversary) included
    losses = [[h["loss"] for h in run["fico_resume"]["history"]] for run in (a, b)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
