"""plugin_api.bert: vocab.txt reading and the tiny in-memory BERT vocabulary."""

from __future__ import annotations

import pytest

from fico_registry.errors import ConfigError
from fico_registry.plugin_api import bert_tokenizer, read_bert_vocab, tiny_bert_char_vocab


def test_ids_are_line_numbers(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[unused0]\n[UNK]\n[CLS]\n[SEP]\nthe\n##s\n", encoding="utf-8")
    assert read_bert_vocab(path) == {"[PAD]": 0, "[unused0]": 1, "[UNK]": 2, "[CLS]": 3, "[SEP]": 4, "the": 5, "##s": 6}


def test_a_file_without_the_specials_or_missing_is_a_config_error(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\nthe\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"no \[SEP\] token"):
        read_bert_vocab(path)
    with pytest.raises(ConfigError, match="cannot read the BERT vocabulary"):
        read_bert_vocab(tmp_path / "absent.txt")


def test_tiny_vocabulary_has_96_distinct_ids_and_covers_letters():
    vocab = tiny_bert_char_vocab()
    assert len(vocab) == 96 and sorted(vocab.values()) == list(range(96))  # fits the tiny configs' 99
    assert vocab["[PAD]"] == 0 and {"a", "##a", "z", "##9", "[MASK]"} <= set(vocab)


def test_tokenizer_over_the_tiny_vocabulary_and_its_size_check():
    vocab = tiny_bert_char_vocab()
    tokenizer = bert_tokenizer(vocab, 99)
    assert tokenizer.tokenize("A cat") == ["a", "c", "##a", "##t"]
    with pytest.raises(ConfigError, match="ids up to 95 but the Q-Former embeds only 50 tokens"):
        bert_tokenizer(vocab, 50, embedder="the Q-Former")
