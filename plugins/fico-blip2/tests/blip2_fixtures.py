"""Fixture builders in the ORIGINAL formats: a tiny transformers model, a LAVIS state dict, a vocab.txt."""

from __future__ import annotations

from pathlib import Path

import torch
from fico_blip2.plugin import TINY

from fico_registry.plugin_api.testing import SAMPLE_CAPTIONS

# A word-level WordPiece vocabulary for the sample captions (ids < TINY["vocab_size"] = 99).
_WORDS = sorted({w for caption in SAMPLE_CAPTIONS for w in caption.split()} | {"dog", "cat", "##s", ",", "'"})
VOCAB_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS]


def write_vocab(path: Path) -> Path:
    path.write_text("\n".join(VOCAB_TOKENS) + "\n", encoding="utf-8")
    return path


def perturbed_tiny_model(seed: int = 1):
    """A tiny Blip2ForImageTextRetrieval whose every weight is random (LayerNorms and biases too),
    so no output is degenerate; the key third of each fused ViT qkv bias stays zero, as in LAVIS."""
    from fico_blip2.architecture import random_model

    model = random_model({**TINY, "seed": seed})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.add_(0.2 * torch.randn(param.shape, generator=generator))
            if name.endswith("self_attn.qkv.bias"):
                third = param.shape[0] // 3
                param[third : 2 * third] = 0
    return model.eval()


# The LAVIS layout written independently of fico_blip2.lavis_keys (explicit names from LAVIS's
# Blip2Qformer / EVA ViT / Qformer.BertModel), so the round trip really tests the plugin's mapping.
_HF_TO_LAVIS_PREFIXES = (
    ("vision_model.embeddings.class_embedding", "visual_encoder.cls_token"),
    ("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed"),
    ("vision_model.embeddings.patch_embedding.", "visual_encoder.patch_embed.proj."),
    ("vision_model.post_layernorm.", "ln_vision."),
    ("vision_model.encoder.layers.", "visual_encoder.blocks."),
    ("embeddings.word_embeddings.", "Qformer.bert.embeddings.word_embeddings."),
    ("embeddings.position_embeddings.", "Qformer.bert.embeddings.position_embeddings."),
    ("qformer.layernorm.", "Qformer.bert.embeddings.LayerNorm."),
    ("qformer.encoder.", "Qformer.bert.encoder."),
    ("vision_projection.", "vision_proj."),
    ("text_projection.", "text_proj."),
)
_HF_TO_LAVIS_PARTS = (
    (".layer_norm1.", ".norm1."),
    (".layer_norm2.", ".norm2."),
    (".self_attn.qkv.", ".attn.qkv."),
    (".self_attn.projection.", ".attn.proj."),
    (".attention.attention.", ".attention.self."),
    (".crossattention.attention.", ".crossattention.self."),
)


def to_lavis_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in hf_state.items():
        name = key
        for old, new in _HF_TO_LAVIS_PREFIXES:
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        for old, new in _HF_TO_LAVIS_PARTS:
            name = name.replace(old, new)
        if name.endswith(".attn.qkv.bias"):
            third = value.shape[0] // 3
            out[name.replace("qkv.bias", "q_bias")] = value[:third].clone()
            out[name.replace("qkv.bias", "v_bias")] = value[2 * third :].clone()
            continue
        out[name] = value.clone()
    # What a real LAVIS file also holds and the retrieval model does not use.
    hidden = hf_state["embeddings.word_embeddings.weight"].shape[1]
    vocab = hf_state["embeddings.word_embeddings.weight"].shape[0]
    out["temp"] = torch.tensor(0.07)
    out["Qformer.bert.embeddings.position_ids"] = torch.arange(TINY["max_position_embeddings"]).unsqueeze(0)
    out["Qformer.cls.predictions.bias"] = torch.zeros(vocab)
    out["Qformer.cls.predictions.transform.dense.weight"] = torch.zeros(hidden, hidden)
    return out


def save_lavis(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save({"model": state, "epoch": 5}, path)
    return path
