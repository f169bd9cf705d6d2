"""ADV training on 2 torch.distributed ranks (gloo, CPU) gives the weights of one process with the whole batch."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from fico_adv import train as T

from fico_registry.checkpoint_io import load_torch_checkpoint

# dropout off: each rank draws its own dropout masks, so with dropout no two runs share a gradient;
# adversarial captions on: their loss is a per-rank sum that the recipe scales by the rank count
OPTIONS = {
    "config": "tiny", "batch_size": 16, "seed": 0, "dropout": 0.0,
    "need_adversary_data": 1, "adversary_num": 2, "adversary_type": "mixed",
}  # fmt: skip


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    from fico_registry.data import synthetic

    root = tmp_path_factory.mktemp("synthetic")
    # 120 captions: 7 batches of 16 and a last one of 8 (4 per rank)
    return synthetic(n_images=24, split="train", root=root / "train"), synthetic(n_images=8, split="val", root=root / "val")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_group(rank: int, world: int, port: int) -> str:
    """What torchrun's environment and `fico train` give a rank: the variables, then the gloo group."""
    from fico_registry.training import _dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    return _dist.init_process_group("cpu")


def _watch_writes(folder: Path) -> list[str]:
    """Every path under `folder` this process opens for writing, creates, renames or removes (audit hook)."""
    root = os.path.realpath(folder)
    seen: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            paths = [path] if writing else []
        elif event in ("os.rename", "shutil.copyfile"):
            paths = [args[1]]
        elif event in ("os.mkdir", "os.remove", "os.rmdir"):
            paths = [args[0]]
        else:
            return
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(path)).startswith(root):
                seen.append(f"{event} {os.fsdecode(path)}")

    sys.addaudithook(hook)
    return seen


def _sharded_worker(rank: int, world: int, port: int, corpora: tuple[Any, Any], out: str) -> None:
    """One rank: 1 epoch, then resumed to 2 (every rank reads rank 0's checkpoint); rank 1 records its writes."""
    from fico_registry.training import _dist

    device = _join_group(rank, world, port)
    writes = _watch_writes(Path(out)) if rank else []
    try:
        for epochs in (1, 2):
            T.train(model="adv-64", train=corpora[0], val=corpora[1], out=Path(out), options={**OPTIONS, "epochs": epochs}, device=device)
    finally:
        _dist.destroy()
    Path(out).with_name(f"writes-rank{rank}.txt").write_text("\n".join(writes))


@pytest.mark.slow
def test_two_ranks_train_like_one_process(corpora: tuple[Any, Any], tmp_path: Path) -> None:
    """Triplet + angular (global batch), concept BCE and adversary loss (per rank), weight norms.

    The attention key biases are the exception to 1e-5: a key bias adds the same q.b to every score
    of a query, which softmax ignores, so their gradient is zero but for rounding noise, which Adam
    normalises into steps of up to the learning rate in either direction.
    """
    import torch.multiprocessing as mp

    train, val = corpora
    single = T.train(model="adv-64", train=train, val=val, out=tmp_path / "single", options={**OPTIONS, "epochs": 2})
    out = tmp_path / "sharded"
    mp.spawn(_sharded_worker, args=(2, _free_port(), corpora, str(out)), nprocs=2, join=True)
    assert (tmp_path / "writes-rank1.txt").read_text() == ""  # only rank 0 wrote the run folder
    a = load_torch_checkpoint(single["last_checkpoint"])
    b = load_torch_checkpoint(out / "checkpoint.pth.tar")
    assert a["Eiters"] == b["Eiters"] == 2 * 8 and a["epoch"] == b["epoch"] == 2 and len(a["model"]) == 3
    noise_bound = a["Eiters"] * T.Options.from_dict(OPTIONS).learning_rate
    for part_a, part_b in zip(a["model"], b["model"], strict=True):
        assert part_a.keys() == part_b.keys()
        for key, value in part_a.items():
            atol = noise_bound if key.endswith("attention.self.key.bias") else 1e-5
            torch.testing.assert_close(part_b[key], value, rtol=0, atol=atol, msg=key)
