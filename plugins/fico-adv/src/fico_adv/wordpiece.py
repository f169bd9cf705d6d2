"""Google-BERT WordPiece tokenisation exactly as ADV used it (its bundled `tokenization.py`).

ADV ships the *early* Google tokenizer: lower-casing strips accents, every ASCII symbol and
Unicode punctuation splits a word, control characters vanish, and (unlike later versions and
transformers' BertTokenizer default) CJK characters are NOT split into single tokens. Special
tokens written inside a caption ("[SEP]") are ordinary text and get split like any other.
Captions become `[CLS] pieces [SEP]`, truncated to max_words - 2 pieces and zero-padded.
"""

from __future__ import annotations

import os
import string
import unicodedata
from collections.abc import Iterable, Sequence

from fico_registry.errors import ConfigError, InputError

MAX_CHARS_PER_WORD = 100  # longer "words" become a single [UNK]
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def load_vocab(path: str | os.PathLike) -> dict[str, int]:
    """One token per line; the line number is the id (lines are stripped, as the original does)."""
    vocab: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for index, line in enumerate(fh):
                vocab[line.strip()] = index
    except FileNotFoundError:
        raise ConfigError(f"vocab file {path} does not exist: give the BERT-base uncased vocab.txt") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"vocab file {path} is not UTF-8 text ({exc})") from None
    return vocab


def tiny_vocab() -> list[str]:
    """A built-in vocabulary for tests: special tokens, ASCII letters/digits/symbols, their ## pieces."""
    chars = string.ascii_lowercase + string.digits
    symbols = [c for c in map(chr, range(33, 127)) if not c.isalnum() and not c.isupper()]
    return [*SPECIAL_TOKENS, *chars, *symbols, *(f"##{c}" for c in chars)]


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    # tab / newline / return count as whitespace, not control
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    # every non-alphanumeric printable ASCII character counts, even "$", "^", "`"
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


class WordPieceTokenizer:
    """Basic tokenisation (clean, lower-case, strip accents, split punctuation) then WordPiece."""

    def __init__(self, vocab: dict[str, int] | Sequence[str], *, do_lower_case: bool = True) -> None:
        self.vocab = dict(vocab) if isinstance(vocab, dict) else {tok: i for i, tok in enumerate(vocab)}
        self.do_lower_case = do_lower_case
        missing = [t for t in ("[UNK]", "[CLS]", "[SEP]") if t not in self.vocab]
        if missing:
            raise ConfigError(f"the vocabulary lacks {', '.join(missing)}: it is not a BERT WordPiece vocab.txt")
        self.unk_id = self.vocab["[UNK]"]
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, do_lower_case: bool = True) -> WordPieceTokenizer:
        return cls(load_vocab(path), do_lower_case=do_lower_case)

    def __len__(self) -> int:
        return max(self.vocab.values()) + 1

    # -- basic tokenisation -------------------------------------------------------------
    def _clean(self, text: str) -> str:
        kept = []
        for char in text:
            if char == "\x00" or char == "\ufffd" or _is_control(char):
                continue
            kept.append(" " if _is_whitespace(char) else char)
        return "".join(kept)

    @staticmethod
    def _strip_accents(text: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")

    @staticmethod
    def _split_punctuation(word: str) -> list[str]:
        pieces: list[str] = []
        current = ""
        for char in word:
            if _is_punctuation(char):
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(char)
            else:
                current += char
        if current:
            pieces.append(current)
        return pieces

    def basic_tokenize(self, text: str) -> list[str]:
        words = []
        for word in self._clean(text).split():
            if self.do_lower_case:
                word = self._strip_accents(word.lower())
            words.extend(self._split_punctuation(word))
        # lower-casing / accent stripping can leave empty strings or new whitespace: re-split
        return " ".join(words).split()

    # -- WordPiece ----------------------------------------------------------------------
    def _wordpiece(self, word: str) -> list[str]:
        if len(word) > MAX_CHARS_PER_WORD:
            return ["[UNK]"]
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            match = None
            while start < end:  # greedy longest match first
                candidate = word[start:end] if start == 0 else "##" + word[start:end]
                if candidate in self.vocab:
                    match = candidate
                    break
                end -= 1
            if match is None:
                return ["[UNK]"]  # one unknown piece makes the whole word unknown
            pieces.append(match)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "ignore")
        if not isinstance(text, str):
            raise InputError(f"captions must be str, got {type(text).__name__}")
        return [piece for word in self.basic_tokenize(text) for piece in self._wordpiece(word)]

    def encode(self, text: str, max_words: int) -> tuple[list[int], list[int]]:
        """ids and attention mask, both of length max_words ([CLS] pieces [SEP], zero-padded)."""
        pieces = self.tokenize(text)[: max_words - 2]
        ids = [self.cls_id, *(self.vocab[p] for p in pieces), self.sep_id]
        mask = [1] * len(ids) + [0] * (max_words - len(ids))
        return ids + [0] * (max_words - len(ids)), mask

    def encode_batch(self, texts: Iterable[str], max_words: int) -> tuple[list[list[int]], list[list[int]]]:
        ids, masks = [], []
        for text in texts:
            i, m = self.encode(text, max_words)
            ids.append(i)
            masks.append(m)
        return ids, masks
