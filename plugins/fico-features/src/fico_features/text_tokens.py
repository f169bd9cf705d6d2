"""Caption tokenisation for Doc2Vec: lower-case word tokens, punctuation dropped.

Unicode NFKC, lower-case, then maximal runs of letters and digits, keeping in-word apostrophes
("man's", "don't"). "A man, riding a bike." -> ["a", "man", "riding", "a", "bike"]. The era's
MS-COCO Doc2Vec features were made with other tokenisers (Stanford CoreNLP, or gensim's
simple_preprocess, which also drops 1-letter words and digits); the version string goes into
every saved model and fingerprint so vectors from different tokenisers never mix.
"""

from __future__ import annotations

import re
import unicodedata

TOKENIZER_VERSION = "fico-words/1"
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def tokenize(text: str) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"captions must be str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text).lower()
    return [token.replace("’", "'") for token in _WORD.findall(text)]
