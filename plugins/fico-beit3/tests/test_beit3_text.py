"""Captions -> [<s>] pieces [</s>] <pad>..., with XLM-R / fairseq ids over beit3.spm."""

from __future__ import annotations

import pytest
import sentencepiece
import torch
from fico_beit3.config import Beit3Config
from fico_beit3.plugin import BASE, TINY
from fico_beit3.text import BOS, EOS, PAD, UNK, CaptionTokenizer, make_tokenizer, tiny_sentencepiece_proto

from fico_registry.errors import DataFormatError


@pytest.fixture()
def processor(spm_file):
    return sentencepiece.SentencePieceProcessor(model_file=str(spm_file))


def test_ids_are_sentencepiece_ids_plus_one(processor):
    tokenizer = CaptionTokenizer(processor, 64, source="test")
    caption = "a man riding a giraffe"
    pieces = processor.encode(caption, out_type=str)
    assert tokenizer.piece_ids(caption) == [processor.piece_to_id(p) + 1 for p in pieces]


def test_unknown_characters_become_unk(processor):
    tokenizer = CaptionTokenizer(processor, 64, source="test")
    ids = tokenizer.piece_ids("a 斑马 cat")
    assert UNK in ids
    assert processor.unk_id() == 0 and 1 not in ids  # sentencepiece's <unk> (0) never leaks as id 1


def test_literal_special_tokens_stay_whole(processor):
    """As XLMRobertaTokenizer's added tokens: specials keep their ids, <mask> = pieces + 1."""
    tokenizer = CaptionTokenizer(processor, 64, source="test")
    mask = processor.get_piece_size() + 1
    ids = tokenizer.piece_ids("a cat <mask> on<s>grass</s> <pad><unk>")
    assert ids.count(BOS) == 1 and ids.count(EOS) == 1 and ids.count(PAD) == 1 and ids.count(mask) == 1
    assert ids[ids.index(mask) + 1 :][:1] == tokenizer.piece_ids("on")[:1]
    assert tokenizer.piece_ids("a cat <mask>") == [*tokenizer.piece_ids("a cat"), mask]
    assert tokenizer.piece_ids("<unk>") == [UNK]


def test_layout_matches_unilm_get_text_segment(processor):
    tokenizer = CaptionTokenizer(processor, 64, source="test")
    captions = tokenizer(["a cat sleeping on a laptop", "two people"])
    assert captions.ids.shape == (2, 64) and captions.padding_mask.shape == (2, 64)
    for row, text in enumerate(["a cat sleeping on a laptop", "two people"]):
        pieces = tokenizer.piece_ids(text)
        n = len(pieces) + 2
        assert captions.ids[row, :n].tolist() == [BOS, *pieces, EOS]
        assert captions.ids[row, n:].eq(PAD).all()
        assert captions.padding_mask[row].tolist() == [False] * n + [True] * (64 - n)


def test_long_captions_keep_the_first_max_minus_two_pieces(processor):
    tokenizer = CaptionTokenizer(processor, 8, source="test")
    text = "a group of children playing football on the grass next to a kitchen"
    pieces = tokenizer.piece_ids(text)
    assert len(pieces) > 6
    captions = tokenizer([text])
    assert captions.ids[0].tolist() == [BOS, *pieces[:6], EOS]
    assert not captions.padding_mask.any()


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_captions_are_refused(processor, text):
    with pytest.raises(DataFormatError, match="no tokens"):
        CaptionTokenizer(processor, 64, source="test")([text])


def test_non_strings_are_refused(processor):
    with pytest.raises(DataFormatError, match="caption strings"):
        CaptionTokenizer(processor, 64, source="test")("a single string")


def test_base_config_pads_to_64_tokens(spm_file):
    tokenizer = make_tokenizer(Beit3Config.from_dict({**BASE, "sentencepiece_model": str(spm_file)}), None)
    assert tokenizer(["a cat"]).ids.shape == (1, 64)


def test_builtin_tiny_model_is_deterministic_and_fits():
    assert tiny_sentencepiece_proto() == tiny_sentencepiece_proto.__wrapped__()
    tokenizer = make_tokenizer(Beit3Config.from_dict(TINY), None)
    assert tokenizer.source == "builtin:tiny" and tokenizer.vocab_size <= TINY["vocab_size"]
    ids = tokenizer(["a red circle above a small blue square"]).ids
    assert ids.max() < TINY["vocab_size"] and ids.dtype == torch.long
