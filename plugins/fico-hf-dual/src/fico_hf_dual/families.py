"""What differs between the four transformers dual encoders: class names, processors, tokenizers.

Names are strings so this module stays light; transformers resolves them at load time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HFFamily:
    key: str
    model_class: str  # has get_image_features / get_text_features returning .pooler_output
    config_class: str
    image_processor: str  # the torchvision-backend class; the PIL backend adds "Pil"
    tokenizer_class: str
    tokenizer_file_sets: tuple[tuple[str, ...], ...]  # a checkpoint folder holds one of these sets

    @property
    def tokenizer_files(self) -> str:
        return " or ".join(" + ".join(files) for files in self.tokenizer_file_sets)


_BPE = (("vocab.json", "merges.txt"), ("tokenizer.json",))
FAMILIES = {
    "clip": HFFamily("clip", "CLIPModel", "CLIPConfig", "CLIPImageProcessor", "CLIPTokenizer", _BPE),
    "align": HFFamily(
        "align",
        "AlignModel",
        "AlignConfig",
        "EfficientNetImageProcessor",
        "BertTokenizer",
        (("vocab.txt",), ("tokenizer.json",)),
    ),
    "altclip": HFFamily(
        "altclip",
        "AltCLIPModel",
        "AltCLIPConfig",
        "CLIPImageProcessor",
        "XLMRobertaTokenizer",
        (("sentencepiece.bpe.model",), ("tokenizer.json",)),
    ),
    "groupvit": HFFamily("groupvit", "GroupViTModel", "GroupViTConfig", "CLIPImageProcessor", "CLIPTokenizer", _BPE),
}
