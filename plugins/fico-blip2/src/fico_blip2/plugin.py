"""Registration only: imported at discovery time, so it imports nothing heavy."""

from dataclasses import replace

from fico_registry import Checkpoint, Family, ModelSpec, OutputKind, hookimpl

# CLIP mean / std, as LAVIS `blip_image_eval` normalises.
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# The published architecture: LAVIS `blip2` model type `coco` (= HF Salesforce/blip2-itm-vit-g-coco).
# EVA ViT-g/14 at 364 px (1 + 26*26 = 677 tokens of 1408), Q-Former = BERT-base with
# cross-attention every 2nd layer, 32 learned queries, 256-d ITC projections.
DEFAULT = {
    "image_size": 364,
    "patch_size": 14,
    "vision_hidden_size": 1408,
    "vision_layers": 39,
    "vision_heads": 16,
    "vision_intermediate_size": 6144,
    "vision_layer_norm_eps": 1e-6,
    "vision_initializer_range": 0.02,
    "qformer_hidden_size": 768,
    "qformer_layers": 12,
    "qformer_heads": 12,
    "qformer_intermediate_size": 3072,
    "cross_attention_frequency": 2,
    "vocab_size": 30523,  # bert-base-uncased + LAVIS's added [DEC] token
    "max_position_embeddings": 512,
    "num_query_tokens": 32,
    "embed_dim": 256,
    "max_text_tokens": 35,  # LAVIS compute_sim_matrix: padding="max_length", max_length=35
    "max_words": 50,  # LAVIS blip_caption processor
    "image_mean": _CLIP_MEAN,
    "image_std": _CLIP_STD,
    "vocab_file": None,  # bert-base-uncased vocab.txt; else found next to the checkpoint
    "builtin_vocab": None,  # "tiny-chars": a synthetic in-memory vocabulary (tests only)
    "precision": "fp32",  # of the ViT; the Q-Former and heads stay fp32 (as transformers keeps them)
    "seed": 0,  # random init (checkpoint=None) is reproducible
}

# Mirrors transformers' own BLIP-2 retrieval test config; random weights, offline tokenizer.
TINY = {
    **DEFAULT,
    "image_size": 30,
    "patch_size": 2,
    "vision_hidden_size": 32,
    "vision_layers": 2,
    "vision_heads": 4,
    "vision_intermediate_size": 37,
    "qformer_hidden_size": 32,
    "qformer_layers": 2,
    "qformer_heads": 4,
    "qformer_intermediate_size": 37,
    "vocab_size": 99,
    "builtin_vocab": "tiny-chars",
}

_HUB_COCO = "Salesforce/blip2-itm-vit-g-coco"
_LAVIS_COCO = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/blip2_finetune_coco.pth"
_PAPER = (
    "Li, Li, Savarese, Hoi. BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image "
    "Encoders and Large Language Models. ICML 2023"
)
_URL = "https://github.com/salesforce/LAVIS/tree/main/projects/blip2"


def _checkpoints() -> dict:
    return {
        "coco": Checkpoint(
            source=_HUB_COCO,
            format="hf",
            description="COCO retrieval fine-tune, transformers format (config.json + weights + vocab.txt)",
        ),
        "lavis-coco": Checkpoint(
            source=_LAVIS_COCO,
            format="lavis-pth",
            description="COCO retrieval fine-tune, original LAVIS file; needs bert-base-uncased vocab.txt beside it",
        ),
    }


BLIP2 = ModelSpec(
    name="blip2",
    family=Family.VLP,
    output=OutputKind.SIMILARITY,
    query_time_attention="fusion-rerank",
    measure="maxsim",  # first stage: ITC, max over the 32 query embeddings
    rerank_k=128,  # LAVIS k_test
    dim=256,
    image_input="pixels",
    text_input="text",
    factory="fico_blip2.model:build",
    configs={"default": DEFAULT, "tiny": TINY},
    checkpoints=_checkpoints(),
    default_checkpoint="coco",
    paper=_PAPER,
    url=_URL,
    license="BSD-3-Clause",
    description="BLIP-2 Q-Former: ITC top-k, re-ranked by ITM logit + ITC similarity (LAVIS retrieval).",
)
# The same model without the fusion re-rank: its first stage alone, as a dual encoder.
BLIP2_NF = replace(
    BLIP2,
    name="blip2-nf",
    output=OutputKind.CONTINUOUS,
    query_time_attention=None,
    rerank_k=None,
    description="BLIP-2 without fusion: ITC only (32 query embeddings per image, max inner product).",
)


@hookimpl
def fico_models(register):
    register(BLIP2)
    register(BLIP2_NF)
