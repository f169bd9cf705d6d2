"""LAVIS BLIP-2 parameter names <-> transformers' Blip2ForImageTextRetrieval names.

A LAVIS checkpoint (`{"model": state_dict}` as saved by LAVIS's runner, e.g.
blip2_finetune_coco.pth) is converted in memory: each name is renamed by the rules below,
and the EVA ViT's separate q/v biases become transformers' fused qkv bias (q, zeros, v),
as LAVIS's own attention builds it on every forward pass. Comparison happens in LAVIS names
so an error names the key exactly as it is (or should be) in the user's file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fico_registry.errors import CheckpointError

# (LAVIS template, transformers template); fields: {i} layer index, {w} weight|bias, {rest} the tail.
_FIELDS = {"i": r"\d+", "w": r"weight|bias", "fc": r"fc1|fc2", "attn": r"attention|crossattention", "rest": r".+"}
_RULES: tuple[tuple[str, str], ...] = (
    ("visual_encoder.cls_token", "vision_model.embeddings.class_embedding"),
    ("visual_encoder.pos_embed", "vision_model.embeddings.position_embedding"),
    ("visual_encoder.patch_embed.proj.{w}", "vision_model.embeddings.patch_embedding.{w}"),
    ("visual_encoder.blocks.{i}.norm1.{w}", "vision_model.encoder.layers.{i}.layer_norm1.{w}"),
    ("visual_encoder.blocks.{i}.norm2.{w}", "vision_model.encoder.layers.{i}.layer_norm2.{w}"),
    ("visual_encoder.blocks.{i}.attn.qkv.weight", "vision_model.encoder.layers.{i}.self_attn.qkv.weight"),
    ("visual_encoder.blocks.{i}.attn.proj.{w}", "vision_model.encoder.layers.{i}.self_attn.projection.{w}"),
    ("visual_encoder.blocks.{i}.mlp.{fc}.{w}", "vision_model.encoder.layers.{i}.mlp.{fc}.{w}"),
    ("ln_vision.{w}", "vision_model.post_layernorm.{w}"),
    ("query_tokens", "query_tokens"),
    ("Qformer.bert.embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("Qformer.bert.embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
    ("Qformer.bert.embeddings.LayerNorm.{w}", "qformer.layernorm.{w}"),
    ("Qformer.bert.encoder.layer.{i}.{attn}.self.{rest}", "qformer.encoder.layer.{i}.{attn}.attention.{rest}"),
    ("Qformer.bert.encoder.layer.{rest}", "qformer.encoder.layer.{rest}"),
    ("vision_proj.{w}", "vision_projection.{w}"),
    ("text_proj.{w}", "text_projection.{w}"),
    ("itm_head.{w}", "itm_head.{w}"),
)
# LAVIS keeps two biases; transformers one fused bias whose middle (key) third is zero.
_Q_BIAS = "visual_encoder.blocks.{i}.attn.q_bias"
_V_BIAS = "visual_encoder.blocks.{i}.attn.v_bias"
_QKV_BIAS = "vision_model.encoder.layers.{i}.self_attn.qkv.bias"
# In LAVIS files but not in the retrieval model: the ITC temperature (unused at test time), the
# Q-Former's language-model head, and BERT's persistent position_ids buffer.
_IGNORED = re.compile(r"^(temp|Qformer\.cls\..+|Qformer\.bert\.embeddings\.position_ids)$")


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name, alternatives in _FIELDS.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>{alternatives})")
    return re.compile(f"^{pattern}$")


_LAVIS_TO_HF = [(_compile(lavis), hf) for lavis, hf in _RULES]
_HF_TO_LAVIS = [(_compile(hf), lavis) for lavis, hf in _RULES]
_Q_BIAS_RE, _V_BIAS_RE, _QKV_BIAS_RE = _compile(_Q_BIAS), _compile(_V_BIAS), _compile(_QKV_BIAS)


def _rename(name: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, target in rules:
        match = pattern.match(name)
        if match:
            return target.format(**match.groupdict())
    return None


def lavis_names_for(hf_name: str) -> tuple[str, ...]:
    """The LAVIS key(s) that hold a transformers parameter (two for a fused qkv bias)."""
    match = _QKV_BIAS_RE.match(hf_name)
    if match:
        return (_Q_BIAS.format(**match.groupdict()), _V_BIAS.format(**match.groupdict()))
    name = _rename(hf_name, _HF_TO_LAVIS)
    if name is None:
        raise CheckpointError(f"no LAVIS name is known for the transformers parameter {hf_name}")
    return (name,)


def hf_name_for(lavis_name: str) -> str | None:
    """The transformers name of a LAVIS key (None for q/v biases, fused separately, and unknown keys)."""
    if _Q_BIAS_RE.match(lavis_name) or _V_BIAS_RE.match(lavis_name):
        return None
    return _rename(lavis_name, _LAVIS_TO_HF)


def unwrap_lavis_checkpoint(obj: Any, where: str) -> Mapping[str, Any]:
    """LAVIS saves {"model": state_dict, "optimizer": ..., "config": ..., "epoch": ...}."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        return obj["model"]
    if isinstance(obj, Mapping) and any(str(k).startswith(("Qformer.", "visual_encoder.")) for k in obj):
        return obj  # a bare LAVIS state dict
    keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"{where}: not a LAVIS BLIP-2 checkpoint: expected a dict with a 'model' state dict "
        f"(LAVIS names such as Qformer.bert.* and visual_encoder.*), found {keys}"
    )


def lavis_to_hf_state_dict(
    lavis_state: Mapping[str, Any], expected_hf_keys: list[str], *, where: str
) -> dict[str, Any]:
    """Rename a LAVIS state dict to transformers names; every missing / unexpected key is an error.

    `expected_hf_keys` are the keys of the model's own state_dict().
    """
    import torch

    keys = [k for k in lavis_state if not _IGNORED.match(k)]
    if not any(k.startswith("visual_encoder.") for k in keys):
        raise CheckpointError(
            f"{where} has no ViT weights (no visual_encoder.* keys). LAVIS saves only trained parameters, so "
            "a checkpoint trained with a frozen ViT (freeze_vit=True, e.g. the stage-1 blip2_pretrained.pth) "
            "lacks the EVA ViT-g. Use the COCO fine-tune blip2_finetune_coco.pth (freeze_vit=False) or the "
            "transformers folder Salesforce/blip2-itm-vit-g-coco."
        )
    expected: dict[str, str] = {}  # LAVIS name -> transformers name
    for hf_key in expected_hf_keys:
        for lavis_key in lavis_names_for(hf_key):
            expected[lavis_key] = hf_key
    missing = [k for k in expected if k not in lavis_state]
    unexpected = [k for k in keys if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected[:10])}{' ...' if len(unexpected) > 10 else ''}")
        raise CheckpointError(f"{where} does not match the BLIP-2 architecture of this config: " + " | ".join(parts))

    state: dict[str, Any] = {}
    for lavis_key in keys:
        hf_key = hf_name_for(lavis_key)
        if hf_key is not None:
            state[hf_key] = lavis_state[lavis_key]
    for hf_key in expected_hf_keys:
        match = _QKV_BIAS_RE.match(hf_key)
        if match:
            q_bias = lavis_state[_Q_BIAS.format(**match.groupdict())]
            v_bias = lavis_state[_V_BIAS.format(**match.groupdict())]
            state[hf_key] = torch.cat((q_bias, torch.zeros_like(v_bias), v_bias))
    return state
