"""Registration only: imported at discovery time, so it imports nothing heavy."""

from fico_registry import Checkpoint, Family, ModelSpec, OutputKind, hookimpl
from fico_registry.plugin_api.bert import BERT_BASE_UNCASED

# X-VLM's test transform: Normalize with the CLIP mean / std (dataset/__init__.py).
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# The published retrieval architecture: configs/Retrieval_{flickr,coco}.yaml with
# config_swinB_384.json (Swin-B, patch 4, window 12, 384 px -> 12x12 tokens of 1024 + an
# average-pooled CLS) and config_bert.json (BERT-base; layers 0-5 text, 6-11 fusion with
# cross-attention to the image tokens).
DEFAULT = {
    "image_res": 384,
    "swin_patch_size": 4,
    "swin_embed_dim": 128,
    "swin_depths": [2, 2, 18, 2],
    "swin_num_heads": [4, 8, 16, 32],
    "window_size": 12,
    "mlp_ratio": 4.0,
    **BERT_BASE_UNCASED,  # config_bert.json's sizes
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "fusion_layer": 6,
    "embed_dim": 256,
    "temp": 0.07,  # ITC temperature (a trained parameter; unused at test time)
    "max_tokens": 40,  # tokenizer padding="max_length", max_length=max_tokens
    "max_words": 30,  # re_eval_dataset's pre_caption(max_words=30)
    "rerank_k": 128,  # Retrieval_flickr.yaml k_test
    "image_mean": _CLIP_MEAN,
    "image_std": _CLIP_STD,
    "vocab_file": None,  # bert-base-uncased vocab.txt; else found next to the checkpoint
    "builtin_vocab": None,  # "tiny-chars": a synthetic in-memory vocabulary (tests only)
    "precision": "fp32",
    "seed": 0,  # random init (checkpoint=None) is reproducible
}

FLICKR30K = dict(DEFAULT)
COCO = {**DEFAULT, "rerank_k": 256}  # Retrieval_coco.yaml k_test
# The pre-trained (not fine-tuned) 4M / 16M checkpoints: config_swinB_224.json.
PRETRAIN_224 = {**DEFAULT, "image_res": 224, "window_size": 7}

# Random weights for tests: three Swin stages (two with shifted-window masks, the last one
# not shifted, like the real fourth stage), a vision width (16) unlike the text width (12),
# two text and two fusion layers; about 17K parameters.
TINY = {
    **DEFAULT,
    "image_res": 64,
    "swin_embed_dim": 4,
    "swin_depths": [2, 2, 2],
    "swin_num_heads": [1, 1, 2],
    "window_size": 4,
    "vocab_size": 99,
    "hidden_size": 12,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 24,
    "max_position_embeddings": 64,
    "fusion_layer": 2,
    "embed_dim": 8,
    "max_tokens": 24,
    "rerank_k": 16,
    "builtin_vocab": "tiny-chars",
}

CONFIGS = {"default": DEFAULT, "flickr30k": FLICKR30K, "coco": COCO, "pretrain-224": PRETRAIN_224, "tiny": TINY}

_DRIVE = "https://drive.google.com/drive/folders/"
_PAPER = "Zeng, Zhang, Li. Multi-Grained Vision Language Pre-Training: Aligning Texts with Visual Concepts. ICML 2022"
_URL = "https://github.com/zengyan-97/X-VLM"


def _checkpoints() -> dict:
    vocab = "; needs bert-base-uncased vocab.txt beside it (or config vocab_file)"
    return {
        "flickr30k": Checkpoint(
            source="xvlm_16m_retrieval_flickr30k.pth",
            format="xvlm-pth",
            description=(
                "X-VLM 16M fine-tuned for Flickr30K retrieval ({'model', 'config'}), from the Google Drive folder "
                f"{_DRIVE}1lsuBVP7MEqGqWkqRxaxb8N8TbSKqQ1Yz; save the checkpoint there as this file name" + vocab
            ),
        ),
        "coco": Checkpoint(
            source="xvlm_16m_retrieval_coco.pth",
            format="xvlm-pth",
            description=(
                "X-VLM 16M fine-tuned for COCO retrieval ({'model', 'config'}), from the Google Drive folder "
                f"{_DRIVE}1VotCNmdevvtMuJmdxPfg3MOZXJRnV96D; save the checkpoint there as this file name; use "
                "config='coco' (k=256)" + vocab
            ),
        ),
        "4m-pretrain": Checkpoint(
            source="4m_base_model_state_step_199999.th",
            format="xvlm-pretrain-th",
            description=(
                "X-VLM 4M pre-trained (not fine-tuned), https://drive.google.com/file/d/"
                "1B3gzyzuDN1DU0lvt2kDz2nTTwSKWqzV5; zero-shot, use config='pretrain-224'" + vocab
            ),
        ),
    }


def _spec(name: str, **kind) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=Family.VLP,
        dim=256,
        measure="cosine",  # ITC: L2-normalised 256-d projections
        image_input="pixels",
        text_input="text",
        factory="fico_xvlm.model:build",
        configs=CONFIGS,
        checkpoints=_checkpoints(),
        default_checkpoint="flickr30k",
        paper=_PAPER,
        url=_URL,
        license="BSD-3-Clause",
        **kind,
    )


@hookimpl
def fico_models(register):
    register(
        _spec(
            "xvlm",
            output=OutputKind.SIMILARITY,
            query_time_attention="fusion-rerank",
            rerank_k=128,  # k_test of Retrieval_flickr.yaml (COCO: 256, config='coco')
            description="X-VLM: ITC top-k re-ranked by the ITM logit of the fusion encoder (Retrieval.py evaluation).",
        )
    )
    register(
        _spec(
            "xvlm-nf",
            output=OutputKind.CONTINUOUS,
            description="X-VLM without fusion: ITC dual encoder, 256-d, cosine.",
        )
    )
