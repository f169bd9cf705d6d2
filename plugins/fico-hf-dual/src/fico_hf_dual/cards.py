"""The four model cards. Imported at discovery time: plain data, no torch / transformers."""

from __future__ import annotations

from fico_registry import Checkpoint, Family, Input, ModelSpec, OutputKind

from .tiny_vocab import BERT_VOCAB_SIZE, CLIP_VOCAB_SIZE, XLMR_VOCAB_SIZE

FACTORY = "fico_hf_dual.model:build"
LICENSE = "Apache-2.0 (transformers code); weights: see each checkpoint's model card on the hub"

# Tiny random towers for tests (a few hundred kB). Token ids match the tiny vocabularies in
# tiny_vocab.py; 'processor': 'tiny' builds the real tokenizer / image processor classes on them.
_TINY_VIT = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 16,
}
_TINY_CLIP_TEXT = {
    "vocab_size": CLIP_VOCAB_SIZE,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 16,
    "bos_token_id": CLIP_VOCAB_SIZE - 2,
    "eos_token_id": CLIP_VOCAB_SIZE - 1,
    "pad_token_id": CLIP_VOCAB_SIZE - 1,
}
_TINY_BERT_TEXT = {
    "vocab_size": BERT_VOCAB_SIZE,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 32,
    "pad_token_id": 0,
}
_TINY_XLMR_TEXT = {
    "vocab_size": XLMR_VOCAB_SIZE,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 40,
    "project_dim": 8,
    "bos_token_id": 0,
    "pad_token_id": 1,
    "eos_token_id": 2,
}
# EfficientNet with two blocks after its 32-channel stem; the image embedding width is the last
# block's channel count, which must equal projection_dim (ALIGN compares it with the text projection)
_TINY_EFFICIENTNET = {
    "image_size": 32,
    "width_coefficient": 1.0,
    "depth_coefficient": 1.0,
    "kernel_sizes": [3, 3],
    "in_channels": [32, 8],
    "out_channels": [8, 8],
    "strides": [1, 2],
    "num_block_repeats": [1, 1],
    "expand_ratios": [1, 2],
    "hidden_dim": 16,
}
_TINY_GROUPVIT = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "depths": [1, 1],
    "num_group_tokens": [4, 0],
    "num_output_groups": [4, 1],
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
# BAAI/AltCLIP: CLIP ViT-L/14 image tower + XLM-R large text tower (AltCLIPTextConfig's defaults)
_ALTCLIP_VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
}


def _tiny(architecture: dict, max_length: int = 16) -> dict:
    return {"architecture": architecture, "processor": "tiny", "max_length": max_length}


def _hub(*pairs: tuple[str, str, str]) -> dict[str, Checkpoint]:
    return {name: Checkpoint(source=hub_id, format="hf", description=text) for name, hub_id, text in pairs}


_COMMON = {
    "family": Family.VLP,
    "output": OutputKind.CONTINUOUS,
    "measure": "cosine",
    "image_input": Input.PIXELS,
    "text_input": Input.TEXT,
    "factory": FACTORY,
    "license": LICENSE,
    "url": "https://huggingface.co/docs/transformers",
}


def _clip() -> ModelSpec:
    return ModelSpec(
        name="hf-clip",
        dim=512,
        configs={
            "default": {"architecture": {}, "processor": "openai/clip-vit-base-patch32", "max_length": 77},
            "tiny": _tiny({"projection_dim": 8, "text_config": _TINY_CLIP_TEXT, "vision_config": _TINY_VIT}),
        },
        checkpoints=_hub(
            ("openai-vit-base-patch32", "openai/clip-vit-base-patch32", "OpenAI CLIP ViT-B/32 (512-d)"),
            ("openai-vit-base-patch16", "openai/clip-vit-base-patch16", "OpenAI CLIP ViT-B/16 (512-d)"),
            ("openai-vit-large-patch14", "openai/clip-vit-large-patch14", "OpenAI CLIP ViT-L/14 (768-d)"),
            (
                "openai-vit-large-patch14-336",
                "openai/clip-vit-large-patch14-336",
                "OpenAI CLIP ViT-L/14@336 (768-d)",
            ),
        ),
        default_checkpoint="openai-vit-base-patch32",
        paper="Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021",
        description="CLIP through transformers' CLIPModel (get_image_features / get_text_features, L2-normalised).",
        extra={"hf_family": "clip"},
        **_COMMON,
    )


def _align() -> ModelSpec:
    return ModelSpec(
        name="hf-align",
        dim=640,
        configs={
            "default": {"architecture": {}, "processor": "kakaobrain/align-base", "max_length": 64},
            "tiny": _tiny({"projection_dim": 8, "text_config": _TINY_BERT_TEXT, "vision_config": _TINY_EFFICIENTNET}),
        },
        checkpoints=_hub(
            ("align-base", "kakaobrain/align-base", "Kakao Brain ALIGN, EfficientNet-B7 + BERT-base, COYO-700M")
        ),
        default_checkpoint="align-base",
        paper=(
            "Jia et al., Scaling Up Visual and Vision-Language Representation Learning With Noisy Text "
            "Supervision, ICML 2021"
        ),
        description=(
            "ALIGN through transformers' AlignModel: image = EfficientNet pooled output, text = BERT [CLS] projected."
        ),
        extra={"hf_family": "align"},
        **_COMMON,
    )


def _altclip() -> ModelSpec:
    return ModelSpec(
        name="hf-altclip",
        dim=768,
        configs={
            "default": {
                "architecture": {"projection_dim": 768, "vision_config": _ALTCLIP_VISION},
                "processor": "BAAI/AltCLIP",
                "max_length": 77,
            },
            "tiny": _tiny({"projection_dim": 8, "text_config": _TINY_XLMR_TEXT, "vision_config": _TINY_VIT}),
        },
        checkpoints=_hub(
            ("altclip", "BAAI/AltCLIP", "BAAI AltCLIP, bilingual (en/zh), ViT-L/14 + XLM-R large"),
            ("altclip-m18", "BAAI/AltCLIP-m18", "BAAI AltCLIP, 18 languages"),
        ),
        default_checkpoint="altclip",
        paper=(
            "Chen et al., AltCLIP: Altering the Language Encoder in CLIP for Extended Language Capabilities, "
            "Findings of ACL 2023"
        ),
        description=(
            "AltCLIP through transformers' AltCLIPModel: CLIP image tower, XLM-R text tower ([CLS] projected)."
        ),
        extra={"hf_family": "altclip"},
        **_COMMON,
    )


def _groupvit() -> ModelSpec:
    return ModelSpec(
        name="hf-groupvit",
        dim=256,
        configs={
            "default": {"architecture": {}, "processor": "nvidia/groupvit-gcc-yfcc", "max_length": 77},
            "tiny": _tiny(
                {
                    "projection_dim": 8,
                    "projection_intermediate_dim": 16,
                    "text_config": _TINY_CLIP_TEXT,
                    "vision_config": _TINY_GROUPVIT,
                }
            ),
        },
        checkpoints=_hub(
            ("gcc-yfcc", "nvidia/groupvit-gcc-yfcc", "GroupViT trained on CC3M+CC12M+YFCC"),
            ("gcc-redcaps", "nvidia/groupvit-gcc-redcaps", "GroupViT trained on CC3M+CC12M+RedCaps"),
        ),
        default_checkpoint="gcc-yfcc",
        paper="Xu et al., GroupViT: Semantic Segmentation Emerges from Text Supervision, CVPR 2022",
        description=(
            "GroupViT through transformers' GroupViTModel: mean of grouped image tokens, CLIP-style text EOS."
        ),
        extra={"hf_family": "groupvit"},
        **_COMMON,
    )


def all_specs() -> list[ModelSpec]:
    return [_clip(), _align(), _altclip(), _groupvit()]
