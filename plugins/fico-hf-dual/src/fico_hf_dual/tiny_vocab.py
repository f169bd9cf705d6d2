"""Tiny vocabularies in each real tokenizer's own scheme, for the random 'tiny' test configs.

Pure Python (the cards import the sizes). Each covers any lower-case ASCII caption without
merges: CLIP's byte-level BPE falls back to single bytes, BERT's WordPiece to single letters
('##x'), XLM-R's Unigram to single characters. So the real tokenizer classes run unchanged,
only with a vocabulary a few hundred entries long.
"""

from __future__ import annotations

import string

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
XLMR_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq order: ids 0..3; <mask> comes last


def byte_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-level alphabet: printable Latin-1 bytes map to themselves, the rest above 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def clip_vocab() -> dict[str, int]:
    """The first 512 entries of CLIP's vocab.json (bytes, then bytes ending a word) plus its two specials."""
    symbols = list(byte_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), CLIP_BOS, CLIP_EOS]
    return {token: index for index, token in enumerate(tokens)}


def bert_vocab() -> dict[str, int]:
    """WordPiece: specials, single characters, and their '##' continuations."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = [*BERT_SPECIALS, *chars, *("##" + c for c in string.ascii_lowercase + string.digits)]
    return {token: index for index, token in enumerate(tokens)}


def xlmr_pieces() -> list[tuple[str, float]]:
    """Unigram pieces with scores, in XLM-R's id layout (<s> <pad> </s> <unk> ... <mask>)."""
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces = [(token, 0.0) for token in XLMR_SPECIALS]
    pieces.append(("▁", -2.0))
    pieces += [("▁" + c, -2.5) for c in string.ascii_lowercase]  # word starts cost less than "▁" + c
    pieces += [(c, -3.0) for c in chars]
    pieces.append(("<mask>", 0.0))
    return pieces


CLIP_VOCAB_SIZE = len(clip_vocab())  # 514
BERT_VOCAB_SIZE = len(bert_vocab())
XLMR_VOCAB_SIZE = len(xlmr_pieces())
