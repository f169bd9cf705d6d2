"""The VSRN training recipe: loss, vocabulary files, checkpoints the adapter loads, resuming,
reduced precision, and 2 torch.distributed ranks (gloo) training like one process."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from fico_registry import load_model
from fico_registry.plugin_api.captions import CaptionTokenizer, Vocabulary, load_vocab
from fico_registry.plugin_api.training import rank_testing


def test_triplet_loss_matches_a_loop_over_pairs() -> None:
    from fico_vsrn.train import hardest_negative_triplet_loss

    gen = torch.Generator().manual_seed(0)
    img, cap = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    s = img @ cap.T
    total_sum, total_max = 0.0, 0.0
    for i in range(5):
        per_caption = [max(0.0, 0.2 + s[i, j] - s[i, i]) for j in range(5) if j != i]  # negatives captions of image i
        per_image = [max(0.0, 0.2 + s[j, i] - s[i, i]) for j in range(5) if j != i]  # negative images of caption i
        total_sum += sum(per_caption) + sum(per_image)
        total_max += max(per_caption) + max(per_image)
    torch.testing.assert_close(hardest_negative_triplet_loss(img, cap, 0.2, False), torch.tensor(float(total_sum)))
    torch.testing.assert_close(hardest_negative_triplet_loss(img, cap, 0.2, True), torch.tensor(float(total_max)))


def test_vocabulary_pickle_has_the_original_layout(tmp_path: Path) -> None:
    from fico_vsrn.vocab_io import build_vocabulary, write_vocab_pickle

    captions = ["A red circle.", "a red square", "A RED circle", "a red circle .", "a blue star"]
    vocab = build_vocabulary(captions, CaptionTokenizer("treebank", "ascii"), threshold=3)
    assert list(vocab.word2idx) == ["<pad>", "<start>", "<end>", "<unk>", "a", "red", "circle"]
    path = write_vocab_pickle(vocab, tmp_path / "f30k_precomp_vocab.pkl")
    assert path.read_bytes().startswith(b"\x80\x02c__main__\nVocabulary\n")
    assert load_vocab(path).word2idx == vocab.word2idx

    class Plain:  # what the original's `pickle.load` would build, given its Vocabulary class
        pass

    class Reader(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> type:
            assert (module, name) == ("__main__", "Vocabulary")
            return Plain

    with open(path, "rb") as fh:
        obj = Reader(fh).load()
    assert obj.idx == 7 and obj.idx2word[5] == "red" and obj.word2idx["circle"] == 6


OPTIONS = {"config": "tiny", "batch_size": 16, "val_batch_size": 8, "vocab_threshold": 2}


def _corpora(root: Path) -> dict:
    """120 training captions: 7 batches of 16 and a last one of 8 (4 per rank on 2 ranks)."""
    return rank_testing.synthetic_splits(root, train=24, val=8)


def _run(tmp_path: Path, out: Path, epochs: int, **options: object) -> dict:
    from fico_vsrn.train import train

    corpora = _corpora(tmp_path)
    options = {**OPTIONS, "epochs": epochs, **options}
    return train(model="vsrn", train=corpora["train"], val=corpora["val"], out=out, options=options, device="cpu")


def test_trains_writes_original_checkpoints_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _run(tmp_path, out, epochs=1)
    assert first["epochs_run"] == 1 and (out / "f30k_precomp_vocab.pkl").is_file()
    ck = torch.load(first["last_checkpoint"], weights_only=False)
    assert set(ck) == {"epoch", "model", "best_rsum", "opt", "Eiters", "fico_resume"}
    assert ck["opt"].data_name == "f30k_precomp" and ck["opt"].vocab_size == len(
        load_vocab(out / "f30k_precomp_vocab.pkl")
    )
    before = ck["model"][0]["fc.weight"].clone()

    second = _run(tmp_path, out, epochs=2)  # resumes from the last checkpoint
    assert second["epochs_run"] == 1 and [h["epoch"] for h in second["history"]] == [1, 2]
    after = torch.load(second["last_checkpoint"], weights_only=False)["model"][0]["fc.weight"]
    assert not torch.equal(before, after)

    model = load_model("vsrn", config="tiny", checkpoint=second["checkpoint"], device="cpu")  # strict, vocab beside it
    assert model.encoder.dim == 8 and isinstance(model.encoder.network.captions.vocab, Vocabulary)


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    from fico_vsrn.train import train

    from fico_registry.errors import ConfigError

    with pytest.raises(ConfigError, match="no options lr"):
        train(model="vsrn", train=None, val=None, out=tmp_path, options={"lr": 0.1})


def test_bf16_autocast_trains_and_saves_float32(tmp_path: Path) -> None:
    record = _run(tmp_path, tmp_path / "run", epochs=1, precision="bf16")
    state = torch.load(record["checkpoint"], weights_only=False)
    assert all(t.dtype == torch.float32 for part in state["model"] for t in part.values() if t.is_floating_point())
    assert torch.isfinite(torch.tensor(record["history"][0]["loss"]))


# -- torch.distributed: 2 gloo ranks on CPU train like one process with the whole batch ------------------
@pytest.mark.slow
def test_two_ranks_train_like_one_process(tmp_path: Path) -> None:
    """2 ranks (1 epoch, then resumed to 2) give the weights of one process training 2 epochs straight.

    VSRN has no dropout; its BatchNorms use the global batch's statistics under torchrun. The conv
    biases just before a BatchNorm (Rs_GCN_k.W.0.bias) are the exception: BatchNorm subtracts the
    mean, so their gradient is zero but for rounding noise (~1e-6 of the other gradients), which
    Adam normalises into steps of up to the learning rate in either direction; they (and the running
    means they shift) may drift apart by a few such steps between any two runs.
    """
    from fico_registry.plugin_api.checkpoints import load_torch_checkpoint

    corpora = _corpora(tmp_path)  # built once here, reused by the ranks
    single = _run(tmp_path, tmp_path / "single", epochs=2)
    # 1 epoch, then resumed to 2 (every rank reads rank 0's checkpoint)
    run = {"model": "vsrn", "train": corpora["train"], "val": corpora["val"], "out": tmp_path / "sharded"}
    writes = rank_testing.train_on_ranks(
        [{**run, "options": {**OPTIONS, "epochs": e}} for e in (1, 2)], watch=tmp_path / "sharded"
    )
    assert writes[1] == []  # only rank 0 wrote the run folder
    a = load_torch_checkpoint(single["last_checkpoint"])
    b = load_torch_checkpoint(tmp_path / "sharded" / "checkpoint.pth.tar")
    assert a["Eiters"] == b["Eiters"] == 2 * 8 and a["epoch"] == b["epoch"] == 2
    noise_bound = a["Eiters"] * a["opt"].learning_rate
    for part_a, part_b in zip(a["model"], b["model"], strict=True):
        assert part_a.keys() == part_b.keys()
        for key, value in part_a.items():
            zero_gradient = ".W.0.bias" in key or ".W.1.running_mean" in key
            atol = noise_bound if zero_gradient else 1e-5
            torch.testing.assert_close(part_b[key], value, rtol=0, atol=atol, msg=key)
    losses = [h["loss"] for h in b["fico_resume"]["history"]]
    assert losses == pytest.approx([h["loss"] for h in single["history"]], rel=1e-5)
    assert b["best_rsum"] == pytest.approx(single["best_rsum"])


def _batchnorm_worker(rank: int, world: int, port: int, folder: str) -> None:
    """GlobalBatchNorm1d on this rank's half of a batch against nn.BatchNorm1d on the whole batch."""
    from torch import nn

    from fico_registry.plugin_api.training import all_gather_with_grad, globalise_batchnorms

    with rank_testing.rank_group(rank, world, port):
        torch.manual_seed(0)
        reference = nn.Sequential(nn.BatchNorm1d(4))
        nn.init.normal_(reference[0].weight)
        sharded = globalise_batchnorms(nn.Sequential(nn.BatchNorm1d(4)))
        sharded.load_state_dict(reference.state_dict())
        ddp = nn.parallel.DistributedDataParallel(sharded)
        x, target = torch.randn(6, 4, 5) * 3 + 1, torch.randn(6, 4, 5)
        mine = x.view(world, -1, 4, 5)[rank].clone().requires_grad_(True)
        whole = x.clone().requires_grad_(True)
        for _ in range(2):  # twice: the running statistics move on from the first batch
            ((all_gather_with_grad(ddp(mine)) - target) ** 2).sum().backward()
            ((reference(whole) - target) ** 2).sum().backward()
    # every rank holds the whole loss, and the gather's backward sums the ranks' gradients: world x
    pairs = [("input grad", mine.grad / world, whole.grad.view(world, -1, 4, 5)[rank])]
    for (name, a), b in zip(sharded.named_parameters(), reference.parameters(), strict=True):
        pairs += [(name, a, b), (f"{name} grad", a.grad, b.grad)]
    pairs += [(n, a.float(), b.float()) for (n, a), b in zip(sharded.named_buffers(), reference.buffers(), strict=True)]
    failures = []
    for name, a, b in pairs:
        try:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    Path(folder, f"rank{rank}.txt").write_text("\n".join(failures))


@pytest.mark.slow
def test_global_batchnorm_on_two_ranks_equals_batchnorm_on_the_whole_batch(tmp_path: Path) -> None:
    rank_testing.spawn_ranks(_batchnorm_worker, str(tmp_path))
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)] == ["", ""]


def test_global_batchnorm_is_batchnorm_in_one_process() -> None:
    from torch import nn

    from fico_registry.plugin_api.training import GlobalBatchNorm1d, globalise_batchnorms

    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    bn = net[1]
    globalise_batchnorms(net)
    assert type(net[1]) is GlobalBatchNorm1d and net[1].weight is bn.weight and net[1].running_var is bn.running_var
    x = torch.randn(5, 3)
    torch.testing.assert_close(net(x), bn(net[0](x)), rtol=0, atol=0)
    assert list(net.state_dict()) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
