"""An original X-VLM run folder loads with only its path: the Swin / BERT JSON configs and the vocab.txt
that the checkpoint's saved config points to (Retrieval.py's layout) are found and used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fico_xvlm.plugin import TINY
from xvlm_fixtures import retrieval_config, save_retrieval_checkpoint, write_vocab

from fico_registry import load_model
from fico_registry.errors import CheckpointError
from fico_registry.plugin_api.testing import sample_batch

yaml = pytest.importorskip("yaml")  # Retrieval.py writes config.yaml with PyYAML
SWIN = "configs/config_swinB_384.json"
BERT = "configs/config_bert.json"


def _original_repo(root: Path, tiny_state: dict) -> Path:
    """The X-VLM repository after `Retrieval.py --output_dir output/itr_flickr`, with tiny JSON configs."""
    (root / "configs").mkdir(parents=True)
    swin = {"ckpt": "data/swin_base_patch4_window7_224_22k.pth", "vision_width": 16, "image_res": TINY["image_res"],
            "window_size": TINY["window_size"], "embed_dim": TINY["swin_embed_dim"], "depths": TINY["swin_depths"],
            "num_heads": TINY["swin_num_heads"]}  # fmt: skip
    (root / SWIN).write_text(json.dumps(swin))
    bert_keys = (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id", "fusion_layer",
    )  # fmt: skip
    bert = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_act": "gelu", "encoder_width": 16,
            **{k: TINY[k] for k in bert_keys}}  # fmt: skip
    (root / BERT).write_text(json.dumps(bert))
    (root / "data" / "bert-base-uncased").mkdir(parents=True)
    write_vocab(root / "data" / "bert-base-uncased" / "vocab.txt")
    out = root / "output" / "itr_flickr"
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.dump(retrieval_config(TINY)))
    return save_retrieval_checkpoint(tiny_state, TINY, out / "checkpoint_best.pth")


def _outputs(model):
    images, captions = sample_batch("pixels", 3, seed=5), sample_batch("text", 3, seed=6)
    img, txt = model.encode_images(images), model.encode_texts(captions)
    return img, txt, model.score_pairs(img, txt)


def test_checkpoint_path_alone_loads_the_run(tmp_path, tiny_state):
    path = _original_repo(tmp_path / "X-VLM", tiny_state)
    vocab = tmp_path / "X-VLM" / "data" / "bert-base-uncased" / "vocab.txt"
    reference = _outputs(
        load_model("xvlm", config={**TINY, "builtin_vocab": None, "vocab_file": str(vocab)}, checkpoint=path)
    )
    for given in (path, path.parent):  # the file, or Retrieval.py's output_dir
        model = load_model("xvlm", checkpoint=given, device="cpu")  # the card's default (Swin-B / BERT-base) config
        got = _outputs(model)
        for a, b in zip(reference[:2], got[:2], strict=True):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert torch.equal(reference[2], got[2])


def test_a_raw_state_dict_reads_config_yaml_beside_it(tmp_path, tiny_state):
    path = _original_repo(tmp_path / "X-VLM", tiny_state)
    torch.save(tiny_state, path)  # no 'config' inside: Retrieval.py's config.yaml beside it says the same
    assert load_model("xvlm-nf", checkpoint=path, device="cpu").encoder.model.vision_proj.out_features == 8


def test_missing_vocab_is_named(tmp_path, tiny_state):
    path = _original_repo(tmp_path / "X-VLM", tiny_state)
    (tmp_path / "X-VLM" / "data" / "bert-base-uncased" / "vocab.txt").unlink()
    with pytest.raises(CheckpointError) as err:
        load_model("xvlm", checkpoint=path, device="cpu")
    assert "vocab.txt (its config['text_encoder']" in str(err.value) and "'vocab_file'" in str(err.value)


@pytest.mark.parametrize("missing", [SWIN, BERT])
def test_missing_json_config_is_named(tmp_path, tiny_state, missing):
    path = _original_repo(tmp_path / "X-VLM", tiny_state)
    (tmp_path / "X-VLM" / missing).unlink()
    with pytest.raises(CheckpointError) as err:
        load_model("xvlm", checkpoint=path, device="cpu")
    assert f"{Path(missing).name} (config['" in str(err.value) and "put it beside the checkpoint" in str(err.value)
