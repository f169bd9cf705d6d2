"""ADV training recipe: the original losses, dropout hooks, checkpoint layout, resuming, options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fico_adv import train as T

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint
from fico_registry.plugin_api.training import rank_testing


# -- the losses against direct transcriptions of loss.py's formulas ------------------------------------
def _loop_triplet(im, s, margin, max_violation):
    n = len(im)
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    total = 0.0
    for i in range(n):  # caption retrieval: image i, negatives = other captions
        costs = [max(0.0, margin + cos(im[i], s[j]) - cos(im[i], s[i])) for j in range(n) if j != i]
        total += max(costs) if max_violation else sum(costs)
    for j in range(n):  # image retrieval: caption j, negatives = other images
        costs = [max(0.0, margin + cos(im[i], s[j]) - cos(im[j], s[j])) for i in range(n) if i != j]
        total += max(costs) if max_violation else sum(costs)
    return total


@pytest.mark.parametrize("max_violation", [True, False])
def test_triplet_loss_is_the_original_contrastive_loss(max_violation):
    g = torch.Generator().manual_seed(0)
    im, s = torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randn(6, 8, generator=g, dtype=torch.float64)
    got = T.triplet_loss(im, s, 0.2, max_violation)
    assert float(got) == pytest.approx(_loop_triplet(im, s, 0.2, max_violation), rel=1e-9)


def test_zero_codes_score_zero_not_nan():
    im = torch.zeros(3, 4)
    assert torch.isfinite(T.triplet_loss(im, torch.ones(3, 4), 0.2, True))


def test_angular_loss_matches_the_per_negative_formula():
    g = torch.Generator().manual_seed(1)
    a = F.normalize(torch.randn(5, 6, generator=g, dtype=torch.float64), dim=1)
    p = F.normalize(torch.randn(5, 6, generator=g, dtype=torch.float64), dim=1)

    def one_way(anc, pos):
        total = 0.0
        for i in range(len(anc)):
            xs = [float(4 * (anc[i] + pos[i]) @ pos[j] - 4 * anc[i] @ pos[i]) for j in range(len(anc)) if j != i]
            total += float(np.log1p(np.exp(max(xs))))
        return total

    assert float(T.angular_loss(a, p)) == pytest.approx(one_way(a, p) + one_way(p, a), rel=1e-9)


def test_angular_weight_schedule_follows_forward_loss():
    opts = T.Options.from_dict({})
    assert [T.angular_alpha(e, opts) for e in (0, 4, 5, 10, 20, 21)] == pytest.approx(
        [0.5, 0.5, 0.05, 0.005, 0.5e-4, 0.0]
    )


def test_adversary_loss():
    img = torch.tensor([[1.0, 0.0]])
    cap = torch.tensor([[1.0, 0.0]])
    adv = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one as close as the caption, one orthogonal
    # (1 - 1 + 0.5) + (0 - 1 + 0.5 -> 0)
    assert float(T.adversary_loss(cap, adv, img, 0.5)) == pytest.approx(0.5)


def test_weight_norms_skip_bias_and_layernorm():
    from fico_adv.bert import BertShape

    net = T.TransformerBinaryMapping(4, 3, BertShape(hidden_size=4, num_attention_heads=2, intermediate_size=8))
    expected = sum(p.norm() for n, p in net.named_parameters() if n.endswith("weight"))
    assert float(T.weight_norms(net).detach()) == pytest.approx(float(expected.detach()))


# -- dropout is added for training only, without touching parameter names ---------------------------------
def test_training_dropout_changes_nothing_in_eval_mode(tiny_config):
    from fico_registry import load_model

    enc = load_model("adv-64", config="tiny").encoder
    text_net, image_net = enc.text_net, enc.image_net
    ids, mask = enc.tokenize(["a man rides a bike", "two dogs"])
    regions = torch.randn(2, 36, 2048)
    keys = (list(text_net.state_dict()), list(image_net.state_dict()))
    with torch.no_grad():
        before = text_net(ids, mask), image_net(regions)
        for net in (text_net, image_net):
            T.add_training_dropout(net, 0.5)
        after = text_net(ids, mask), image_net(regions)
        assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
        text_net.train()
        assert not torch.equal(text_net(ids, mask), before[0])
    assert (list(text_net.state_dict()), list(image_net.state_dict())) == keys


# -- end to end on a tiny synthetic corpus -----------------------------------------------------------
@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    splits = rank_testing.synthetic_splits(tmp_path_factory.mktemp("synthetic"), train=24, val=8)
    return splits["train"], splits["val"]


def _train(corpora, out, **options):
    train, val = corpora
    base = {"config": "tiny", "epochs": 1, "batch_size": 16, "seed": 0}
    return T.train(model="adv-64", train=train, val=val, out=out, options={**base, **options})


def test_checkpoint_has_the_original_layout_and_loads_strictly(corpora, tmp_path):
    from fico_adv.checkpoint import read_checkpoint

    from fico_registry import evaluate, load_dataset, load_model

    record = _train(corpora, tmp_path)
    assert record["config"] == "tiny" and record["epochs_run"] == 1 and record["best_epoch"] == 1
    state = load_torch_checkpoint(record["checkpoint"])
    assert {"epoch", "model", "best_rsum", "opt", "Eiters"} <= set(state)
    assert state["epoch"] == 1 and state["Eiters"] == 8  # ceil(120 captions / 16)
    opt = vars(state["opt"])
    assert opt["model_name"] == "rerank_model" and opt["final_dims"] == 64 and opt["max_words"] == 32
    assert opt["margin"] == 0.2 and opt["concept_num"] == 12 and opt["need_concept_label"] == 1
    ckpt = read_checkpoint(record["checkpoint"])
    assert ckpt.concept_state is not None and set(ckpt.concept_state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    model = load_model("adv-64", config="tiny", checkpoint=record["checkpoint"])
    codes = model.encode_texts(["a red circle"])
    assert codes.shape == (1, 64)
    report = evaluate(model, load_dataset("synthetic", split="test", root=tmp_path / "test", n_images=6), cache=False)
    assert report.instance["i2t"]["R@1"] >= 0


def test_resumed_run_equals_an_uninterrupted_one(corpora, tmp_path):
    straight = _train(corpora, tmp_path / "a", epochs=2)
    _train(corpora, tmp_path / "b", epochs=1)
    resumed = _train(corpora, tmp_path / "b", epochs=2)
    assert resumed["epochs_run"] == 1 and [h["epoch"] for h in resumed["history"]] == [1, 2]
    a = load_torch_checkpoint(tmp_path / "a" / "checkpoint.pth.tar")
    b = load_torch_checkpoint(tmp_path / "b" / "checkpoint.pth.tar")
    assert a["Eiters"] == b["Eiters"] == 2 * 8
    for sa, sb in zip(a["model"], b["model"], strict=True):
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    assert straight["history"][-1]["val_rsum"] == resumed["history"][-1]["val_rsum"]


def test_resume_refuses_a_different_architecture(corpora, tmp_path):
    _train(corpora, tmp_path)
    with pytest.raises(ConfigError, match="final_dims"):
        T.train(
            model="adv-2048", train=corpora[0], val=corpora[1], out=tmp_path,
            options={"config": "tiny", "epochs": 2, "batch_size": 16},
        )  # fmt: skip


def test_built_vocabulary_travels_with_the_checkpoint(corpora, tmp_path):
    from fico_registry import load_model

    record = _train(corpora, tmp_path, vocab="build")
    config = record["config"]
    assert isinstance(config, dict) and config["vocab_file"] is None
    vocab = (tmp_path / "vocab.txt").read_text().splitlines()
    assert len(vocab) == config["bert_config"]["vocab_size"] and "circle" in vocab
    model = load_model("adv-64", config=json.loads(json.dumps(config)), checkpoint=record["checkpoint"])
    assert model.encoder.tokenizer.tokenize("a red circle") == ["a", "red", "circle"]


def test_concept_loss_needs_labels(corpora, tmp_path):
    train, val = corpora
    unlabeled = train.with_labels(np.zeros((train.n_images, 1), dtype=np.uint8))
    object.__setattr__(unlabeled, "labels", None)
    with pytest.raises(ConfigError, match="need_concept_label=0"):
        T.train(model="adv-64", train=unlabeled, val=val, out=tmp_path, options={"config": "tiny", "epochs": 1})
    record = T.train(
        model="adv-64", train=unlabeled, val=val, out=tmp_path,
        options={"config": "tiny", "epochs": 1, "batch_size": 16, "need_concept_label": 0},
    )  # fmt: skip
    assert len(load_torch_checkpoint(record["checkpoint"])["model"]) == 2


def test_adversarial_captions_are_generated_and_trained_on(corpora, tmp_path):
    captions = list(corpora[0].captions)
    for kind in ("noun", "num", "rela", "mixed"):
        advs = T.generated_adversaries(captions, kind, 3, seed=0)
        assert len(advs) == len(captions) and all(len(a) == 3 for a in advs)
        changed = sum(a != c for group, c in zip(advs, captions, strict=True) for a in group)
        assert changed >= 0.9 * 3 * len(captions)
    record = _train(corpora, tmp_path, need_adversary_data=1, adversary_num=2, adversary_type="mixed")
    assert "adversary" in record["objective"]


def test_adversaries_from_the_original_json(corpora, tmp_path):
    captions = list(corpora[0].captions)
    data = {
        str(j): {"raw": c, "adversary": {"noun": [c + " x"], "num": [], "rela": []}} for j, c in enumerate(captions)
    }
    path = tmp_path / "train_caps+rephrase+30advs.json"
    path.write_text(json.dumps(data))
    advs = T.file_adversaries(str(path), captions, "noun", 2)
    assert advs[0] == [captions[0] + " x"] * 2
    data["0"]["raw"] = "something else"
    for j in range(1, 5):
        data[str(j)]["raw"] = "other"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="differ"):
        T.file_adversaries(str(path), captions, "noun", 2)


def test_bert_init_reads_transformers_names(tmp_path):
    from safetensors.torch import save_file

    cfg = T.AdvConfig.from_dict({**T.resolve_model_config("adv-64", "tiny")[0]})
    source = T.BertBinaryMapping(cfg.bert_shape, cfg.final_dims, cfg.cnn_channels)
    renamed = {}
    for key, value in source.bert.state_dict().items():
        renamed[
            "bert." + key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        ] = value.clone()
    renamed["cls.predictions.bias"] = torch.zeros(3)  # heads of the pretraining checkpoint are ignored
    save_file(renamed, tmp_path / "model.safetensors")
    torch.save(renamed, tmp_path / "pytorch_model.bin")
    for path in (tmp_path / "model.safetensors", tmp_path / "pytorch_model.bin"):
        target = T.BertBinaryMapping(cfg.bert_shape, cfg.final_dims, cfg.cnn_channels)
        T.load_bert_init(target, str(path))
        for key, value in source.bert.state_dict().items():
            assert torch.equal(target.bert.state_dict()[key], value)
    del renamed["bert.pooler.dense.weight"]
    save_file(renamed, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="pooler"):
        T.load_bert_init(
            T.BertBinaryMapping(cfg.bert_shape, cfg.final_dims, cfg.cnn_channels), str(tmp_path / "model.safetensors")
        )


def test_registered_defaults_are_the_published_ones():
    from fico_registry import get_trainer_spec

    for name in ("adv-64", "adv-2048"):
        spec = get_trainer_spec(name)
        assert spec.factory == "fico_adv.train:train"
        d = spec.defaults
        assert (d["epochs"], d["batch_size"], d["learning_rate"], d["lr_update"]) == (100, 128, 1e-4, 10)
        assert (d["margin"], d["max_violation"], d["grad_clip"]) == (0.2, True, 2.0)
        assert "train_reranking.py" in spec.paper_recipe


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="unknown ADV training options"):
        T.Options.from_dict({"lr": 0.1})
    with pytest.raises(ConfigError, match="adversary_type"):
        T.Options.from_dict({"adversary_type": "verbs"})
    with pytest.raises(ConfigError, match="bert_init"):
        T.Options.from_dict({"vocab": "build", "bert_init": "x.bin"})


def test_bf16_autocast_trains_and_saves_float32(corpora, tmp_path):
    record = _train(corpora, tmp_path, precision="bf16")
    state = load_torch_checkpoint(record["checkpoint"])
    assert all(t.dtype == torch.float32 for part in state["model"] for t in part.values() if t.is_floating_point())
    assert np.isfinite(record["history"][0]["loss"])
