"""fico_registry.plugin_api.captions: caption tokens as nltk.word_tokenize(caption.lower()), and the
original vocabulary files."""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from scan_originals import SPECIALS, WORDS, write_vocab_json

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.captions import (
    CaptionTokenizer,
    Vocabulary,
    build_vocab,
    encode_captions,
    find_vocab_file,
    load_vocab,
    load_vocab_json,
    save_vocab_json,
)


@pytest.mark.parametrize(
    ("caption", "tokens"),
    [
        ("A man's dog, running.", ["a", "man", "'s", "dog", ",", "running", "."]),
        ("Two kids don't play.  A dog sits.", ["two", "kids", "do", "n't", "play", ".", "a", "dog", "sits", "."]),
        ('He said "hi" (twice)', ["he", "said", "``", "hi", "''", "(", "twice", ")"]),
        ("A  red-brick   wall", ["a", "red-brick", "wall"]),
    ],
)
def test_treebank_tokens(caption: str, tokens: list[str]) -> None:
    assert CaptionTokenizer()(caption) == tokens


def test_lowercase_modes_differ_only_for_non_ascii() -> None:
    assert CaptionTokenizer(lowercase="ascii")("CAFÉ Ünder") == ["cafÉ", "Ünder"]  # Python 2 str.lower()
    assert CaptionTokenizer(lowercase="unicode")("CAFÉ Ünder") == ["café", "ünder"]


def test_bad_settings_are_errors() -> None:
    with pytest.raises(ConfigError, match="rules must be one of"):
        CaptionTokenizer(rules="spacy")
    with pytest.raises(ConfigError, match="captions must be str"):
        CaptionTokenizer()(b"bytes")  # type: ignore[arg-type]


def test_json_vocabulary_and_encoding(tmp_path: Path) -> None:
    vocab = load_vocab(write_vocab_json(tmp_path / "f30k_precomp_vocab.json"))
    assert len(vocab) == len(SPECIALS) + len(WORDS)
    assert [vocab(t) for t in SPECIALS] == [0, 1, 2, 3]
    ids = encode_captions(["A red zebra."], vocab, CaptionTokenizer())
    assert ids == [[1, vocab("a"), vocab("red"), 3, 3, 2]]  # <start> a red <unk>(zebra) <unk>(.) <end>


def test_vocabulary_round_trip_is_the_original_layout(tmp_path: Path) -> None:
    vocab = Vocabulary.from_words(["b", "a", "b"])
    path = tmp_path / "v.json"
    save_vocab_json(vocab, path)
    data = json.loads(path.read_text())
    assert data == {
        "word2idx": {"<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3, "b": 4, "a": 5},
        "idx2word": {"0": "<pad>", "1": "<start>", "2": "<end>", "3": "<unk>", "4": "b", "5": "a"},
        "idx": 6,
    }
    assert load_vocab_json(path).word2idx == vocab.word2idx


def test_build_vocab_keeps_frequent_words_in_first_seen_order() -> None:
    captions = ["a red circle", "a blue circle", "A red square", "a red circle"]
    vocab = build_vocab(captions, CaptionTokenizer(), threshold=2)
    assert list(vocab.word2idx)[4:] == ["a", "red", "circle"]
    assert len(build_vocab(captions, CaptionTokenizer(), threshold=4)) == 5  # only "a" reaches 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"word2idx": {"<pad>": 0, "<start>": 1, "<end>": 2}, "idx": 3}', "lacks the special tokens <unk>"),
        ('{"word2idx": {"<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 5}}', "without gaps"),
        ('{"word2idx": {"<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3}, "idx": 7}', "'idx' is 7"),
        ("[1, 2]", "expected the SCAN vocabulary layout"),
        ("{not json", "not a readable JSON vocabulary"),
    ],
)
def test_malformed_json_vocabularies(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "v.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=message):
        load_vocab(path)


def _pickle_as_main_vocabulary(path: Path, monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """A Vocabulary object pickled (protocol 2) from a script, as VSRN's vocab.py did."""

    class Vocabulary:  # the original class name and attributes
        def __init__(self) -> None:
            self.word2idx = {w: i for i, w in enumerate(SPECIALS + WORDS)}
            self.idx2word = {i: w for w, i in self.word2idx.items()}
            self.idx = len(self.word2idx)

    Vocabulary.__module__ = module
    Vocabulary.__qualname__ = "Vocabulary"
    target = sys.modules.get(module) or type(sys)(module)
    monkeypatch.setitem(sys.modules, module, target)
    monkeypatch.setattr(target, "Vocabulary", Vocabulary, raising=False)
    path.write_bytes(pickle.dumps(Vocabulary(), protocol=2))


@pytest.mark.parametrize("module", ["__main__", "vocab"])
def test_vsrn_pickled_vocabulary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    path = tmp_path / "f30k_precomp_vocab.pkl"
    _pickle_as_main_vocabulary(path, monkeypatch, module)
    vocab = load_vocab(path)
    assert len(vocab) == len(SPECIALS) + len(WORDS) and vocab("red") == 5 and vocab("zebra") == 3


class Evil:
    def __reduce__(self) -> Any:
        return (os.system, ("echo pwned",))


def test_pickles_cannot_run_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(CheckpointError, match=r"refusing to load posix\.system"):
        load_vocab(path)


def test_find_vocab_file(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model_best.pth.tar"
    checkpoint.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no vocabulary: put the original f30k_precomp_vocab\.json"):
        find_vocab_file("f30k_precomp_vocab.json", checkpoint=checkpoint)
    write_vocab_json(tmp_path / "f30k_precomp_vocab.json")
    assert find_vocab_file("f30k_precomp_vocab.json", checkpoint=checkpoint) == tmp_path / "f30k_precomp_vocab.json"
    with pytest.raises(ConfigError, match="is not a file"):
        find_vocab_file("x.json", vocab_path=tmp_path / "missing.json")


def test_vocabulary_words_must_be_a_list():
    with pytest.raises(ConfigError, match="scan config vocab_words must be a list of words, got str"):
        Vocabulary.from_words("abc", source="scan config vocab_words")  # type: ignore[arg-type]
