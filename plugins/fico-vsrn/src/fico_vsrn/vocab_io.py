"""Building and writing vocabularies the way VSRN's vocab.py does.

`build_vocabulary`: tokens of the training (and dev) captions with a count >= threshold, after
the four special tokens. `write_vocab_pickle`: a protocol-2 pickle of a `__main__.Vocabulary`
object with the attributes word2idx / idx2word / idx, byte-compatible in structure with the
published files, so both the original code and fico_registry.plugin_api.captions.load_vocab read it.
"""

from __future__ import annotations

import os
import pickle
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from fico_registry.plugin_api.captions import CaptionTokenizer, Vocabulary

ORIGINAL_THRESHOLD = 4  # vocab.py: build_vocab(..., threshold=4)


def build_vocabulary(
    captions: Iterable[str], tokenizer: CaptionTokenizer, *, threshold: int = ORIGINAL_THRESHOLD
) -> Vocabulary:
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(tokenizer(caption))
    return Vocabulary.from_words(
        [w for w, n in counts.items() if n >= threshold], source="built from the training captions"
    )


def write_vocab_pickle(vocab: Vocabulary, path: str | os.PathLike) -> Path:
    """Write `vocab` as the original's pickled Vocabulary (class __main__.Vocabulary, protocol 2)."""
    state = {"word2idx": dict(vocab.word2idx), "idx2word": dict(vocab.idx2word), "idx": len(vocab)}
    body = pickle.dumps(state, protocol=2)[2:-1]  # the state dict without its PROTO header and STOP
    data = (
        pickle.PROTO + b"\x02"
        + pickle.GLOBAL + b"__main__\nVocabulary\n"
        + pickle.EMPTY_TUPLE + pickle.NEWOBJ  # object.__new__(Vocabulary), as pickle does for new-style classes
        + body
        + pickle.BUILD  # obj.__dict__.update(state)
        + pickle.STOP
    )  # fmt: skip
    target = Path(path)
    target.write_bytes(data)
    return target
