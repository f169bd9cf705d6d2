"""Fixture files in VSRN's ORIGINAL formats, written from the published names and shapes.

Nothing here uses fico_vsrn's modules: the checkpoint keys and shapes come from the original
`EncoderImagePrecompAttn` / `Rs_GCN` / `EncoderText` definitions, the opt Namespace from the
original train.py arguments, and the vocabulary pickle from the original `vocab.Vocabulary`.
"""

from __future__ import annotations

import argparse
import pickle
import struct
import sys
import types
from pathlib import Path
from typing import Any

import torch

SPECIALS = ["<pad>", "<start>", "<end>", "<unk>"]


def image_encoder_shapes(embed: int, img_dim: int, data_name: str) -> dict[str, tuple[int, ...]]:
    """EncoderImagePrecompAttn.state_dict() names and shapes."""
    shapes: dict[str, tuple[int, ...]] = {"fc.weight": (embed, img_dim), "fc.bias": (embed,)}
    shapes.update(
        {
            "img_rnn.weight_ih_l0": (3 * embed, embed),
            "img_rnn.weight_hh_l0": (3 * embed, embed),
            "img_rnn.bias_ih_l0": (3 * embed,),
            "img_rnn.bias_hh_l0": (3 * embed,),
        }
    )
    for k in range(1, 5):
        block = f"Rs_GCN_{k}"
        for conv in ("g", "theta", "phi", "W.0"):
            shapes[f"{block}.{conv}.weight"] = (embed, embed, 1)
            shapes[f"{block}.{conv}.bias"] = (embed,)
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{block}.W.1.{part}"] = (embed,)
        shapes[f"{block}.W.1.num_batches_tracked"] = ()
    if data_name == "f30k_precomp":
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"bn.{part}"] = (embed,)
        shapes["bn.num_batches_tracked"] = ()
    return shapes


def text_encoder_shapes(vocab_size: int, word_dim: int, embed: int, num_layers: int) -> dict[str, tuple[int, ...]]:
    """EncoderText.state_dict() names and shapes."""
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (vocab_size, word_dim)}
    for layer in range(num_layers):
        width = word_dim if layer == 0 else embed
        shapes[f"rnn.weight_ih_l{layer}"] = (3 * embed, width)
        shapes[f"rnn.weight_hh_l{layer}"] = (3 * embed, embed)
        shapes[f"rnn.bias_ih_l{layer}"] = (3 * embed,)
        shapes[f"rnn.bias_hh_l{layer}"] = (3 * embed,)
    return shapes


def caption_model_shapes(
    vocab_size: int, dim_vid: int = 16, dim_hidden: int = 8, dim_word: int = 8
) -> dict[str, tuple[int, ...]]:
    """S2VTAttModel(EncoderRNN, DecoderRNN).state_dict() names and shapes (the caption branch)."""
    h = dim_hidden
    return {
        "encoder.vid2hid.weight": (h, dim_vid),
        "encoder.vid2hid.bias": (h,),
        "encoder.rnn.weight_ih_l0": (3 * h, h),
        "encoder.rnn.weight_hh_l0": (3 * h, h),
        "encoder.rnn.bias_ih_l0": (3 * h,),
        "encoder.rnn.bias_hh_l0": (3 * h,),
        "decoder.embedding.weight": (vocab_size, dim_word),
        "decoder.attention.linear1.weight": (h, 2 * h),
        "decoder.attention.linear1.bias": (h,),
        "decoder.attention.linear2.weight": (1, h),
        "decoder.rnn.weight_ih_l0": (3 * h, h + dim_word),
        "decoder.rnn.weight_hh_l0": (3 * h, h),
        "decoder.rnn.bias_ih_l0": (3 * h,),
        "decoder.rnn.bias_hh_l0": (3 * h,),
        "decoder.out.weight": (vocab_size, h),
        "decoder.out.bias": (vocab_size,),
    }


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random values everywhere (BatchNorm affine and statistics included, so nothing is an identity)."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(100, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) + 0.5
        elif name.endswith("running_mean"):
            state[name] = torch.randn(shape, generator=gen) * 0.1
        else:
            fan_in = shape[1] if len(shape) > 1 else shape[0]
            state[name] = torch.randn(shape, generator=gen) / fan_in**0.5
    return state


def original_opt(**overrides: Any) -> argparse.Namespace:
    """The Namespace train.py pickles into every checkpoint (its arguments, plus vocab_size)."""
    opt = dict(
        data_path="/data", data_name="f30k_precomp", vocab_path="./vocab/", margin=0.2, num_epochs=30,
        batch_size=128, word_dim=300, embed_size=2048, grad_clip=2.0, crop_size=224, num_layers=1,
        learning_rate=0.0002, lr_update=10, workers=10, log_step=10, val_step=500, logger_name="runs/flickr_VSRN",
        resume="", max_violation=True, img_dim=2048, finetune=False, cnn_type="vgg19", use_restval=False,
        measure="cosine", use_abs=False, no_imgnorm=False, reset_train=False, dim_vid=2048, dim_hidden=512,
        bidirectional=0, input_dropout_p=0.2, rnn_type="gru", rnn_dropout_p=0.5, dim_word=300, max_len=60,
        vocab_size=8481,
    )  # fmt: skip
    opt.update(overrides)
    return argparse.Namespace(**opt)


def write_vocab_pickle(path: Path, words: list[str], *, module: str = "vocab") -> Path:
    """A protocol-2 pickle of a `Vocabulary` object as VSRN's vocab.py writes it (module `vocab` or `__main__`)."""

    class Vocabulary:  # the original's attributes: word2idx, idx2word, idx
        def __init__(self) -> None:
            self.word2idx: dict[str, int] = {}
            self.idx2word: dict[int, str] = {}
            self.idx = 0

        def add_word(self, word: str) -> None:
            if word not in self.word2idx:
                self.word2idx[word] = self.idx
                self.idx2word[self.idx] = word
                self.idx += 1

    Vocabulary.__module__ = module
    Vocabulary.__qualname__ = "Vocabulary"
    vocab = Vocabulary()
    for word in [*SPECIALS, *words]:
        vocab.add_word(word)
    # pickle looks the class up by module and name: expose it there while dumping
    owner = sys.modules.get(module)
    temporary = owner is None
    if temporary:
        owner = sys.modules[module] = types.ModuleType(module)
    old = getattr(owner, "Vocabulary", None)
    owner.Vocabulary = Vocabulary  # type: ignore[attr-defined]
    try:
        path.write_bytes(pickle.dumps(vocab, protocol=2))
    finally:
        if temporary:
            del sys.modules[module]
        elif old is None:
            del owner.Vocabulary  # type: ignore[attr-defined]
        else:
            owner.Vocabulary = old  # type: ignore[attr-defined]
    return path


def write_checkpoint(
    path: Path,
    *,
    vocab_size: int,
    embed: int = 8,
    word_dim: int = 6,
    img_dim: int = 2048,
    num_layers: int = 1,
    data_name: str = "f30k_precomp",
    seed: int = 0,
    extra_entries: list[dict[str, torch.Tensor]] | None = None,
    legacy_format: bool = True,
    python2_strings: bool = False,
    **opt_overrides: Any,
) -> Path:
    """An original `.pth.tar`: {epoch, model: [img_enc, txt_enc, ...], best_rsum, opt, Eiters}."""
    img = random_state(image_encoder_shapes(embed, img_dim, data_name), seed)
    txt = random_state(text_encoder_shapes(vocab_size, word_dim, embed, num_layers), seed + 1)
    opt = original_opt(
        data_name=data_name, embed_size=embed, word_dim=word_dim, img_dim=img_dim, num_layers=num_layers,
        vocab_size=vocab_size, **opt_overrides,
    )  # fmt: skip
    checkpoint = {
        "epoch": 12,
        "model": [img, txt, *(extra_entries or [])],
        "best_rsum": 480.5,
        "opt": opt,
        "Eiters": 27000,
    }
    # PyTorch 0.4.1 wrote the legacy (non-zip) serialisation format
    if python2_strings:
        torch.save(
            checkpoint, path, pickle_module=_python2_pickle, pickle_protocol=2, _use_new_zipfile_serialization=False
        )
    else:
        torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy_format)
    return path


class _Python2StrPickler(pickle._Pickler):  # the pure-Python pickler lets us choose opcodes
    """Pickles every str as Python 2 wrote its byte strings (SHORT_BINSTRING / BINSTRING, latin-1 bytes)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: str) -> None:
        data = obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_python2_str


def _dump_python2(obj: Any, file: Any, protocol: int = 2) -> None:
    _Python2StrPickler(file, protocol=protocol).dump(obj)


_python2_pickle = types.ModuleType("python2_pickle")  # what torch.save(pickle_module=...) calls
_python2_pickle.Pickler = _Python2StrPickler  # type: ignore[attr-defined]
_python2_pickle.dump = _dump_python2  # type: ignore[attr-defined]


def write_model_folder(folder: Path, words: list[str], *, name: str = "model_fliker_1.pth.tar", **kwargs: Any) -> Path:
    """A checkpoint with the original vocabulary file beside it, as a user would lay them out."""
    folder.mkdir(parents=True, exist_ok=True)
    data_name = kwargs.get("data_name", "f30k_precomp")
    write_vocab_pickle(folder / f"{data_name}_vocab.pkl", words)
    return write_checkpoint(folder / name, vocab_size=len(SPECIALS) + len(words), **kwargs)
