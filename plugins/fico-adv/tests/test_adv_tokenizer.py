"""ADV's WordPiece port: equal to transformers' BertTokenizer where the early Google tokenizer is."""

from __future__ import annotations

import pytest
from fico_adv.wordpiece import WordPieceTokenizer

TRICKY = [
    "A man in a red shirt is riding a bike down the street.",
    "  leading and trailing spaces  ",
    "Two dogs play in the snow;one is brown,the other white!",
    'Café owner\'s "special" crème brûlée — 3.5$ each...',
    "UNKNOWNWORDS and un-known-ish words (riding)",
    "tabs\tand\nnewlines\r\nand\u00a0no-break\u2009thin spaces",
    "control\x00chars\x07and\ufffdreplacement\u200bzero width",
    "x" * 101 + " followed by a word",
    "émigré naïve façade Ångström ß",
    "symbols ^ ` ~ | \\ @ # % & * + = < > { } [ ]",
    "curly “quotes” and ‘single’ ones… ¿qué? ¡sí!",
    "",
]


@pytest.fixture
def vocab_path(tmp_path, write_vocab):
    return write_vocab(tmp_path / "vocab.txt", size=300)


@pytest.mark.parametrize("text", TRICKY)
def test_same_pieces_as_transformers(text, vocab_path):
    transformers = pytest.importorskip("transformers")
    # the early Google tokenizer ADV bundles does not split CJK characters
    reference = transformers.BertTokenizer(vocab=str(vocab_path), do_lower_case=True, tokenize_chinese_chars=False)
    ours = WordPieceTokenizer.from_file(vocab_path)
    assert ours.tokenize(text) == reference.tokenize(text)
    ids, mask = ours.encode(text, 32)
    expected = reference(text, max_length=32, truncation=True, padding="max_length")
    assert ids == expected["input_ids"]
    assert mask == expected["attention_mask"]


def test_truncation_and_padding(vocab_path):
    tok = WordPieceTokenizer.from_file(vocab_path)
    ids, mask = tok.encode(" ".join(["man"] * 50), 32)
    assert len(ids) == len(mask) == 32 and sum(mask) == 32
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id  # 30 pieces kept, then [SEP]
    ids, mask = tok.encode("a man", 8)
    assert ids == [tok.cls_id, tok.vocab["a"], tok.vocab["man"], tok.sep_id, 0, 0, 0, 0]
    assert mask == [1, 1, 1, 1, 0, 0, 0, 0]


def test_original_quirks(vocab_path):
    tok = WordPieceTokenizer.from_file(vocab_path)
    # special tokens typed in a caption are plain text to the original tokenizer
    assert tok.tokenize("a [SEP] b") == ["a", "[", "s", "##e", "##p", "]", "b"]
    # no CJK splitting: an unknown run of CJK characters is one [UNK]
    assert tok.tokenize("猫狗 man") == ["[UNK]", "man"]
    # a word over 100 characters is one [UNK]; one unknown piece makes the whole word [UNK]
    assert tok.tokenize("y" * 101) == ["[UNK]"]
    assert tok.tokenize("man☃") == ["[UNK]"]
    assert tok.tokenize("unknown") == ["un", "##known"]


def test_cased_vocab_keeps_case(vocab_path):
    tok = WordPieceTokenizer.from_file(vocab_path, do_lower_case=False)
    assert tok.tokenize("Man") == ["[UNK]"]  # "M" is not in the (lower-case) test vocabulary
