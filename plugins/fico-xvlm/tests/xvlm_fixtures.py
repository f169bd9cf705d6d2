"""Fixtures in the ORIGINAL formats, written independently of fico_xvlm's name mapping.

`original_layout(config)` lists X-VLM's state-dict keys and shapes from the published layout
(models/xvlm.py XVLMBase + models/swin_transformer.py + models/xbert.py, as recorded in
shared/research/MODELS.md): Swin stages downsample at their END (`layers.{i}.downsample`,
i < last), blocks save `attn.relative_position_index` and, where they shift, `attn_mask`;
BERT without pooler, cross-attention from `fusion_layer` on with keys / values from the image
width; `vision_proj`, `text_proj`, `temp`, `itm_head.{0,1,3}`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fico_registry.plugin_api.testing import SAMPLE_CAPTIONS

# A word-level WordPiece vocabulary for the sample captions (ids < the tiny vocab_size, 99).
_WORDS = sorted({w for caption in SAMPLE_CAPTIONS for w in caption.split()} | {"dog", "cat", "##s", ",", "'"})
VOCAB_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS]

FLOAT, INDEX = "float", "index"


def write_vocab(path: Path) -> Path:
    path.write_text("\n".join(VOCAB_TOKENS) + "\n", encoding="utf-8")
    return path


def _stage_geometry(config: dict) -> list[tuple[int, int, int, int]]:
    """Per stage: (width, resolution, window, shift) after Swin's 'window >= resolution' rule."""
    grid = config["image_res"] // config["swin_patch_size"]
    out = []
    for stage in range(len(config["swin_depths"])):
        width, resolution = config["swin_embed_dim"] * 2**stage, grid // 2**stage
        window, shift = config["window_size"], config["window_size"] // 2
        if resolution <= window:
            window, shift = resolution, 0
        out.append((width, resolution, window, shift))
    return out


def original_layout(config: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    """{original key: (shape, FLOAT | INDEX)} of an X-VLM retrieval state dict."""
    keys: dict[str, tuple[tuple[int, ...], str]] = {}

    def linear(name: str, n_out: int, n_in: int, bias: bool = True) -> None:
        keys[f"{name}.weight"] = ((n_out, n_in), FLOAT)
        if bias:
            keys[f"{name}.bias"] = ((n_out,), FLOAT)

    def norm(name: str, n: int) -> None:
        keys[f"{name}.weight"] = ((n,), FLOAT)
        keys[f"{name}.bias"] = ((n,), FLOAT)

    v = "vision_encoder"
    embed, patch = config["swin_embed_dim"], config["swin_patch_size"]
    keys[f"{v}.patch_embed.proj.weight"] = ((embed, 3, patch, patch), FLOAT)
    keys[f"{v}.patch_embed.proj.bias"] = ((embed,), FLOAT)
    norm(f"{v}.patch_embed.norm", embed)
    geometry = _stage_geometry(config)
    for stage, (width, resolution, window, shift) in enumerate(geometry):
        heads = config["swin_num_heads"][stage]
        for block in range(config["swin_depths"][stage]):
            b = f"{v}.layers.{stage}.blocks.{block}"
            norm(f"{b}.norm1", width)
            keys[f"{b}.attn.relative_position_bias_table"] = (((2 * window - 1) ** 2, heads), FLOAT)
            keys[f"{b}.attn.relative_position_index"] = ((window * window, window * window), INDEX)
            linear(f"{b}.attn.qkv", 3 * width, width)
            linear(f"{b}.attn.proj", width, width)
            norm(f"{b}.norm2", width)
            linear(f"{b}.mlp.fc1", int(width * config["mlp_ratio"]), width)
            linear(f"{b}.mlp.fc2", width, int(width * config["mlp_ratio"]))
            if block % 2 == 1 and shift > 0:
                windows = (resolution // window) ** 2
                keys[f"{b}.attn_mask"] = ((windows, window * window, window * window), FLOAT)
        if stage < len(geometry) - 1:
            keys[f"{v}.layers.{stage}.downsample.reduction.weight"] = ((2 * width, 4 * width), FLOAT)
            norm(f"{v}.layers.{stage}.downsample.norm", 4 * width)
    vision_width = geometry[-1][0]
    norm(f"{v}.norm", vision_width)

    t, hidden = "text_encoder", config["hidden_size"]
    keys[f"{t}.embeddings.position_ids"] = ((1, config["max_position_embeddings"]), INDEX)
    keys[f"{t}.embeddings.word_embeddings.weight"] = ((config["vocab_size"], hidden), FLOAT)
    keys[f"{t}.embeddings.position_embeddings.weight"] = ((config["max_position_embeddings"], hidden), FLOAT)
    keys[f"{t}.embeddings.token_type_embeddings.weight"] = ((config["type_vocab_size"], hidden), FLOAT)
    norm(f"{t}.embeddings.LayerNorm", hidden)
    for i in range(config["num_hidden_layers"]):
        layer = f"{t}.encoder.layer.{i}"
        attentions = [("attention", hidden)]
        if i >= config["fusion_layer"]:
            attentions.append(("crossattention", vision_width))
        for attention, context in attentions:
            linear(f"{layer}.{attention}.self.query", hidden, hidden)
            linear(f"{layer}.{attention}.self.key", hidden, context)
            linear(f"{layer}.{attention}.self.value", hidden, context)
            linear(f"{layer}.{attention}.output.dense", hidden, hidden)
            norm(f"{layer}.{attention}.output.LayerNorm", hidden)
        linear(f"{layer}.intermediate.dense", config["intermediate_size"], hidden)
        linear(f"{layer}.output.dense", hidden, config["intermediate_size"])
        norm(f"{layer}.output.LayerNorm", hidden)

    linear("vision_proj", config["embed_dim"], vision_width)
    linear("text_proj", config["embed_dim"], hidden)
    keys["temp"] = ((), FLOAT)
    linear("itm_head.0", 2 * hidden, hidden)
    norm("itm_head.1", 2 * hidden)
    linear("itm_head.3", 2, 2 * hidden)
    return keys


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the (2w-1)^2 bias table of each (query, key) pair of a window, row-major."""
    rows = torch.arange(window).repeat_interleave(window)
    cols = torch.arange(window).repeat(window)
    dh = rows[:, None] - rows[None, :] + window - 1
    dw = cols[:, None] - cols[None, :] + window - 1
    return dh * (2 * window - 1) + dw


def shifted_window_mask(resolution: int, window: int, shift: int) -> torch.Tensor:
    """(windows, w*w, w*w): 0 where two positions of a rolled window came from the same region, else -100."""
    bands = torch.zeros(resolution, dtype=torch.long)
    bands[resolution - window : resolution - shift] = 1
    bands[resolution - shift :] = 2
    region = bands[:, None] * 3 + bands[None, :]  # (H, W)
    n = resolution // window
    windows = region.view(n, window, n, window).permute(0, 2, 1, 3).reshape(n * n, window * window)
    different = windows[:, :, None] != windows[:, None, :]
    return torch.where(different, torch.tensor(-100.0), torch.tensor(0.0))


def original_state_dict(config: dict, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random weights (LayerNorms around 1, everything non-degenerate) in X-VLM's layout."""
    generator = torch.Generator().manual_seed(seed)
    geometry = _stage_geometry(config)
    state: dict[str, torch.Tensor] = {}
    for key, (shape, _kind) in original_layout(config).items():
        if key.endswith("relative_position_index"):
            stage = int(key.split(".")[2])
            state[key] = relative_position_index(geometry[stage][2])
        elif key.endswith("attn_mask"):
            _, resolution, window, shift = geometry[int(key.split(".")[2])]
            state[key] = shifted_window_mask(resolution, window, shift)
        elif key.endswith("position_ids"):
            state[key] = torch.arange(shape[1]).unsqueeze(0)
        elif key == "temp":
            state[key] = torch.tensor(config["temp"])
        else:
            value = 0.3 * torch.randn(shape, generator=generator)
            if key.endswith("weight") and ("norm" in key.lower() or key.startswith("itm_head.1.")):
                value = 1.0 + 0.2 * value
            state[key] = value
        assert tuple(state[key].shape) == shape, key
    return state


def retrieval_config(config: dict) -> dict:
    """What Retrieval.py saves next to the weights: the YAML config (plain values)."""
    return {
        "vision_config": "configs/config_swinB_384.json",
        "use_clip_vit": False,
        "use_swin": True,
        "image_res": config["image_res"],
        "patch_size": 32,
        "use_roberta": False,
        "text_config": "configs/config_bert.json",
        "text_encoder": "data/bert-base-uncased",
        "batch_size_test": 12,
        "max_tokens": config["max_tokens"],
        "embed_dim": config["embed_dim"],
        "temp": 0.07,
        "k_test": 128,
        "optimizer": {"opt": "adamW", "lr": 3e-5, "weight_decay": 0.01, "lr_mult": 2},
    }


def to_pretrain_layout(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A pre-training state dict: BertForMaskedLM text encoder (bert. prefix, cls head) and a bbox head."""
    out = {}
    for key, value in state.items():
        out["text_encoder.bert." + key[len("text_encoder.") :] if key.startswith("text_encoder.") else key] = value
    hidden, vocab = config["hidden_size"], config["vocab_size"]
    out["text_encoder.cls.predictions.bias"] = torch.zeros(vocab)
    out["text_encoder.cls.predictions.transform.dense.weight"] = torch.zeros(hidden, hidden)
    out["text_encoder.cls.predictions.transform.dense.bias"] = torch.zeros(hidden)
    out["text_encoder.cls.predictions.transform.LayerNorm.weight"] = torch.ones(hidden)
    out["text_encoder.cls.predictions.transform.LayerNorm.bias"] = torch.zeros(hidden)
    out["text_encoder.cls.predictions.decoder.weight"] = torch.zeros(vocab, hidden)
    out["text_encoder.cls.predictions.decoder.bias"] = torch.zeros(vocab)
    out["bbox_head.0.weight"] = torch.zeros(2 * hidden, hidden)
    out["bbox_head.0.bias"] = torch.zeros(2 * hidden)
    out["bbox_head.3.weight"] = torch.zeros(4, 2 * hidden)
    return out


def save_retrieval_checkpoint(state: dict[str, torch.Tensor], config: dict, path: Path) -> Path:
    torch.save({"model": state, "config": retrieval_config(config)}, path)
    return path
