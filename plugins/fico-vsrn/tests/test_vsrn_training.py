"""The VSRN training recipe: loss, vocabulary files, checkpoints the adapter loads, resuming."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import fico_registry
from fico_registry import load_model
from fico_registry.text import CaptionTokenizer, Vocabulary, load_vocab


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


def _run(tmp_path: Path, out: Path, epochs: int) -> dict:
    from fico_vsrn.train import train

    corpora = {
        split: fico_registry.data.synthetic(n_images=n, split=split, root=tmp_path / split)
        for split, n in (("train", 24), ("val", 8))
    }
    options = {"config": "tiny", "epochs": epochs, "batch_size": 16, "val_batch_size": 8, "vocab_threshold": 2}
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
