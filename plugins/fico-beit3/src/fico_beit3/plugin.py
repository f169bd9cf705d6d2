"""Registration only: imported at discovery time, so it imports nothing heavy."""

from dataclasses import replace

from fico_registry import Checkpoint, Family, ModelSpec, OutputKind, hookimpl

# unilm beit3 `_get_base_config(img_size=384)` -> torchscale EncoderConfig: multiway, sub-LN
# (pre-norm), no embedding scale / LayerNorm, output LayerNorm, layernorm_eps 1e-5, 1024 text
# positions; images Resize((384, 384), bicubic) + Normalize(mean=std=0.5); captions
# [<s>] spm pieces [</s>] padded with <pad> to num_max_bpe_tokens = 64.
BASE = {
    "embed_dim": 768,
    "layers": 12,
    "attention_heads": 12,
    "ffn_dim": 3072,
    "image_size": 384,
    "patch_size": 16,
    "in_chans": 3,
    "vocab_size": 64010,
    "max_source_positions": 1024,
    "layernorm_eps": 1e-5,
    "max_text_tokens": 64,
    "image_mean": [0.5, 0.5, 0.5],  # timm IMAGENET_INCEPTION_MEAN
    "image_std": [0.5, 0.5, 0.5],  # timm IMAGENET_INCEPTION_STD
    "sentencepiece_model": None,  # path to beit3.spm; else beit3.spm next to the checkpoint
    "builtin_spm": None,  # "tiny": a sentencepiece model trained in memory (tests only)
    "precision": "fp32",  # "fp16" / "bf16": CUDA autocast, as unilm's evaluate() runs
    "seed": 0,  # random init (checkpoint=None) is reproducible
}

# unilm `_get_large_config(img_size=384)`.
LARGE = {**BASE, "embed_dim": 1024, "layers": 24, "attention_heads": 16, "ffn_dim": 4096}

# A few-kB random version: 2 layers of width 32, 32-px images in 8-px patches, a 100-token
# vocabulary covered by a sentencepiece model trained in memory at build time.
TINY = {
    **BASE,
    "embed_dim": 32,
    "layers": 2,
    "attention_heads": 4,
    "ffn_dim": 64,
    "image_size": 32,
    "patch_size": 8,
    "vocab_size": 100,
    "max_source_positions": 64,
    "max_text_tokens": 32,
    "builtin_spm": "tiny",
}

_RELEASE = "https://github.com/addf400/files/releases/download/beit3"
SENTENCEPIECE_URL = f"{_RELEASE}/beit3.spm"
_PAPER = (
    "Wang, Bao, Dong, Bjorck, Peng, Liu, Aggarwal, Mohammed, Singhal, Som, Wei. Image as a Foreign "
    "Language: BEiT Pretraining for Vision and Vision-Language Tasks. CVPR 2023"
)
_URL = "https://github.com/microsoft/unilm/tree/master/beit3"


def _checkpoints(size: str) -> dict:
    return {
        dataset: Checkpoint(
            source=f"{_RELEASE}/beit3_{size}_patch16_384_{dataset}_retrieval.pth",
            format="pth",
            description=(
                f"BEiT-3 {size} fine-tuned for {title} retrieval at 384 px (unilm, {{'model': state_dict}}); "
                f"needs beit3.spm ({SENTENCEPIECE_URL}) beside it or config sentencepiece_model"
            ),
        )
        for dataset, title in (("coco", "COCO"), ("f30k", "Flickr30K"))
    }


BEIT3 = ModelSpec(
    name="beit3",
    family=Family.VLP,
    output=OutputKind.CONTINUOUS,
    dim=768,
    measure="cosine",  # L2-normalised CLS projections, scored by their dot product
    image_input="pixels",
    text_input="text",
    factory="fico_beit3.model:build",
    configs={"default": BASE, "large": LARGE, "tiny": TINY},
    checkpoints=_checkpoints("base"),
    paper=_PAPER,
    url=_URL,
    license="MIT",
    description="BEiT-3 base retrieval: Multiway Transformer, image CLS via the vision expert, "
    "caption CLS via the language expert, each through its head and L2-normalised.",
)
# The same card at the large size: only the width, the configs and the weights differ.
BEIT3_LARGE = replace(
    BEIT3,
    name="beit3-large",
    dim=1024,
    configs={"default": LARGE, "tiny": TINY},
    checkpoints=_checkpoints("large"),
    description="BEiT-3 large retrieval (24 layers, 1024-d), same heads and preprocessing as beit3.",
)


@hookimpl
def fico_models(register):
    register(BEIT3)
    register(BEIT3_LARGE)
