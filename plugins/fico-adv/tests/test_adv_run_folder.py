"""An original ADV run folder loads with only the checkpoint path: the JSON configs and vocab.txt
that train_reranking.py's opt names (bert_config_file, trans_cfg, vocab_file) are found and used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fico_registry import load_model
from fico_registry.errors import CheckpointError

BERT = "data/bert_ckpt/uncased_L-12_H-768_A-12/"
EXP = "runs/f30k_precomp/2021_03_01,10_00_00_gpu1_"
# Small, but not the plugin's tiny config: 4 heads where tiny has 2, so only the JSON files can tell.
BERT_JSON = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 32,
    "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": 64, "num_attention_heads": 4,
    "num_hidden_layers": 2, "type_vocab_size": 2, "vocab_size": 109,
}  # fmt: skip
T_CFG_JSON = {**BERT_JSON, "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 4, "vocab_size": 30522}
_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "max_position_embeddings", "type_vocab_size")  # fmt: skip


def _original_repo(root: Path, tiny_config, original_checkpoint):
    """The repository after `python train_reranking.py --final_dims 64`: the published text CNN (512
    channels) and regions (2048-d), small BERT / transformer sizes given by the JSON files."""
    from fico_adv.wordpiece import tiny_vocab

    config = tiny_config(
        "adv-64",
        cnn_channels=512,
        bert_config={k: BERT_JSON[k] for k in _KEYS},
        trans_cfg={k: T_CFG_JSON[k] for k in ("hidden_size", "num_attention_heads", "intermediate_size")},
    )
    source = load_model("adv-64", config=config, device="cpu")
    torch.manual_seed(2)
    with torch.no_grad():
        for p in [*source.encoder.image_net.parameters(), *source.encoder.text_net.parameters()]:
            p.add_(torch.randn_like(p) * 0.05)
    (root / BERT).mkdir(parents=True)
    (root / BERT / "bert_config.json").write_text(json.dumps(BERT_JSON))
    (root / BERT / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    (root / "t_cfg.json").write_text(json.dumps(T_CFG_JSON))
    (root / EXP / "checkpoints").mkdir(parents=True)
    path = original_checkpoint(
        source.encoder,
        root / EXP / "checkpoints" / "model_best.pth.tar",
        exp_dir=EXP,
        bert_path=BERT,
        vocab_file=BERT + "vocab.txt",
        bert_config_file=BERT + "bert_config.json",
        init_checkpoint=BERT + "pytorch_model.bin",
    )
    return source, path


def test_checkpoint_path_alone_loads_the_run(tmp_path, regions, captions, tiny_config, original_checkpoint):
    source, path = _original_repo(tmp_path / "adv", tiny_config, original_checkpoint)
    for given in (path, path.parent):  # the file, or the checkpoints/ folder holding it
        loaded = load_model("adv-64", checkpoint=given, device="cpu")
        assert loaded.encoder.config.bert_config["num_attention_heads"] == 4
        assert loaded.encoder.config.trans_cfg["num_attention_heads"] == 4
        assert torch.equal(loaded.encoder.image_activations(regions), source.encoder.image_activations(regions))
        assert torch.equal(loaded.encoder.text_activations(captions), source.encoder.text_activations(captions))


def test_missing_vocab_is_named(tmp_path, tiny_config, original_checkpoint):
    _, path = _original_repo(tmp_path / "adv", tiny_config, original_checkpoint)
    (tmp_path / "adv" / BERT / "vocab.txt").unlink()
    with pytest.raises(CheckpointError) as err:
        load_model("adv-64", checkpoint=path, device="cpu")
    assert "vocab.txt (its opt.vocab_file = " in str(err.value) and "'vocab_file'" in str(err.value)


def test_missing_bert_config_is_named(tmp_path, tiny_config, original_checkpoint):
    _, path = _original_repo(tmp_path / "adv", tiny_config, original_checkpoint)
    (tmp_path / "adv" / BERT / "bert_config.json").unlink()
    with pytest.raises(CheckpointError) as err:  # BERT-base sizes of the config against the small tensors
        load_model("adv-64", checkpoint=path, device="cpu")
    assert "bert_config.json (opt.bert_config_file = " in str(err.value)
