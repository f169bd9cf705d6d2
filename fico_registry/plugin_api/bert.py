"""For plugins whose text side is a BERT (ADV, BLIP-2, X-VLM, ...): BERT-base's shape and WordPiece vocabularies.

Nothing heavy at import: bert-base-uncased's bert_config.json sizes as a card config fragment, a
vocab.txt read into {token: id}, a tiny in-memory vocabulary for random-weight test configs, and
transformers' BertTokenizer over either (transformers imported on call).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from fico_registry.errors import ConfigError

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")

# bert_config.json of Google's BERT-base uncased (L-12 H-768 A-12): the sizes a card config repeats.
BERT_BASE_UNCASED = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}


def read_bert_vocab(path: str | Path) -> dict[str, int]:
    """vocab.txt: one token per line, the id is the line number (as BERT's load_vocab)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise ConfigError(f"cannot read the BERT vocabulary {path}: {exc.strerror or exc}") from None
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {token: index for index, token in enumerate(lines)}
    for special in BERT_SPECIALS:
        if special not in vocab:
            raise ConfigError(f"{path} is not a BERT WordPiece vocab.txt: it has no {special} token")
    return vocab


def tiny_bert_char_vocab() -> dict[str, int]:
    """96 tokens: BERT's specials and [MASK], letters / digits as word starts and as ## continuations,
    punctuation. Any lower-case ASCII caption tokenises into it (for tiny test configs)."""
    specials = [*BERT_SPECIALS, "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits)
    punctuation = list(",'-/?&+=@$%<>[]{}_|")
    tokens = specials + chars + [f"##{c}" for c in chars] + punctuation
    return {token: index for index, token in enumerate(tokens)}


def bert_tokenizer(vocab: Path | dict[str, int], vocab_size: int, *, embedder: str = "the text encoder") -> Any:
    """transformers' BertTokenizer, uncased (as bert-base-uncased), over a vocab.txt path or a {token: id} dict.

    A vocabulary with ids the model cannot embed (>= `vocab_size`) is a ConfigError naming `embedder`.
    """
    from fico_registry.plugin_api.compat import ensure_torchvision

    ensure_torchvision()  # transformers may import its image utilities
    from transformers import BertTokenizer

    tokens = read_bert_vocab(vocab) if isinstance(vocab, Path) else vocab
    if max(tokens.values()) >= vocab_size:
        raise ConfigError(
            f"the vocabulary has ids up to {max(tokens.values())} but {embedder} embeds only {vocab_size} tokens: "
            "wrong vocab.txt for this checkpoint / config"
        )
    return BertTokenizer(vocab=tokens, do_lower_case=True)
