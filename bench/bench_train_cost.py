"""Expected training time of each recipe on one GPU for Flickr30K: an estimate from counted FLOPs.

For every recipe (`fico train MODEL`) at its PUBLISHED architecture (the model card's "default"
config) and published batch size, one training step (forward, losses, backward; ADV's frozen BERT
forward only, DADH's two discriminator updates included) is run on this CPU, with random inputs of
Flickr30K's shapes, under a dispatch mode applying torch.utils.flop_counter's per-operator formulas
(FlopCounterMode's). They count matrix products and convolutions (not element-wise ops, softmax or
the optimizer update), which dominate these models. Then

    hours = FLOPs/step x steps/epoch x epochs / (peak FLOP/s x utilisation) / 3600

with steps/epoch = ceil(samples / batch): ADV, SCAN, IMRAM and VSRN take one sample per caption
(145,000 Flickr30K Karpathy training captions); UCCH and DADH one per image (29,000; UCCH drops the
incomplete last batch). Epochs and batch sizes are the recipes' registered defaults. The default
assumption is an A100's 19.5 TFLOP/s fp32 peak at 30% sustained (--peak-tflops, --utilisation):
change them to match a GPU, or TF32 / bf16 peaks.

Big batches at the published width do not fit a shared CPU (SCAN's 128 x 128 cross-attention pairs
hold GBs of activations), so FLOPs are counted at two small batches b1 < b2 and fitted exactly by
FLOPs(B) = a B + c B^2 (per-sample encoders plus in-batch pairwise scoring), checked against a
third batch b3 (the "fit err" column), and evaluated at the published batch. "CPU s/step" is the
measured wall time of a full step (with the Adam update) at batch b3 on this machine, for scale.

Assumptions (flags): 14 word tokens per caption (Flickr30K's ~12.3 words + <start>/<end>);
ADV pads to its 32 WordPiece tokens; DADH's category labels: 24 classes (Flickr30K has none; the
label-weighted loss is negligible in FLOPs). Feature extraction (bottom-up regions, VGG-19 fc7,
Doc2Vec) is a one-off cost outside these numbers.

Usage: .venv/bin/python bench/bench_train_cost.py [--models scan,imram] [--steps 2] [--batches 4,8,16]
       [--peak-tflops 19.5] [--utilisation 0.3] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from fico_registry.training.loop import optimizer_step

F30K_IMAGES = 29_000  # Karpathy train split
F30K_CAPTIONS = 145_000
REGIONS = 36
MODELS = ("adv-64", "adv-2048", "scan", "imram", "vsrn", "ucch", "dadh")

Step = Callable[[], None]  # one training step (forward, loss, backward, optimizer update)


@dataclass(frozen=True)
class Setting:
    words: int
    dadh_classes: int


# -- one training step per recipe, at the published architecture ---------------------------------------
def _adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=lr)


def adv_step(model: str, batch: int, setting: Setting) -> Step:
    """fico_adv.train.batch_loss (triplet + angular + regulariser + concept BCE) on random regions / token ids."""
    import numpy as np
    from fico_adv import train as adv
    from fico_adv.config import AdvConfig

    cfg_dict, _ = adv.resolve_model_config(model, "default")
    cfg = AdvConfig.from_dict(cfg_dict)
    opts = adv.Options.from_dict({})
    concepts = 1000  # assumed size of the concept vocabulary; the head is < 0.1% of the step
    nets = adv.Networks.build(cfg, opts, concepts, "cpu", 1)
    for module in nets.modules:
        module.train()
    regions = torch.rand(batch, REGIONS, cfg.img_dim)
    data = adv.TrainingData(
        caption_to_image=np.arange(batch),
        ids=torch.randint(1000, cfg.bert_shape.vocab_size, (batch, cfg.max_words)),
        mask=torch.ones(batch, cfg.max_words, dtype=torch.long),
        regions=lambda items: regions[torch.as_tensor(items)],
        concept_labels=(torch.rand(batch, concepts) < 0.01).float(),
        adv_ids=None,
        adv_mask=None,
    )
    optimizer = _adam(nets.parameters(), opts.learning_rate)
    caps = np.arange(batch)

    def step() -> None:
        optimizer_step(adv.batch_loss(nets, data, caps, 0, opts, "cpu", 1), optimizer, [])

    return step


def cross_attention_step(model: str, batch: int, setting: Setting) -> Step:
    """SCAN / IMRAM: encoders, the batch's image x caption cross-attention scores, hardest-negative triplet."""
    from fico_scan import train as loop
    from fico_scan.options import merge_options

    from fico_registry.plugin_api.captions import Vocabulary

    if model == "scan":
        recipe = loop.SCAN_RECIPE
    else:
        from fico_imram.train import IMRAM_RECIPE as recipe
    cfg, _ = loop.resolve_model_config(model, "default")
    cfg.update(vocab_words=None, vocab_path=None)
    options = merge_options(cfg, None, recipe.opt_defaults, where=f"{model} bench")
    vocab = Vocabulary.from_words([f"w{i}" for i in range(int(options["vocab_size"]) - 4)], source="stand-in")
    net = recipe.build(options, vocab, "cpu")
    for module in recipe.modules(net):
        module.train()
    params = recipe.parameters(net)
    optimizer = _adam(params, 2e-4)
    regions = torch.rand(batch, REGIONS, int(options["img_dim"]))
    ids = torch.randint(4, len(vocab), (batch, setting.words))
    lengths = torch.full((batch,), setting.words, dtype=torch.long)
    mask = torch.ones(batch, setting.words, dtype=torch.bool)

    def step() -> None:
        scores = net.pair_scores(net.img_enc(regions), net.txt_enc(ids, lengths), mask)
        optimizer_step(loop.contrastive_loss(scores, 0.2, True), optimizer, params, grad_clip=2.0)

    return step


def vsrn_step(model: str, batch: int, setting: Setting) -> Step:
    """VSRN retrieval encoders (GCN reasoning + GRU) and the hardest-negative triplet loss."""
    from fico_vsrn import train as vsrn
    from fico_vsrn.model import ARCH_DEFAULTS, VsrnNetwork

    from fico_registry.plugin_api.captions import Vocabulary

    settings = vsrn._config({"config": "default"}, model)
    settings["precision"] = "fp32"
    arch = {k: settings[k] for k in ARCH_DEFAULTS}
    vocab = Vocabulary.from_words([f"w{i}" for i in range(int(settings["vocab_size"]) - 4)], source="stand-in")
    network = VsrnNetwork(arch, settings, vocab, "cpu", model_name=model)
    img_enc, txt_enc = network.img_enc, network.txt_enc
    img_enc.train()
    txt_enc.train()
    params = [*txt_enc.parameters(), *img_enc.parameters()]
    optimizer = _adam(params, 2e-4)
    regions = torch.rand(batch, REGIONS, int(arch["img_dim"]))
    ids = torch.randint(4, len(vocab), (batch, setting.words))
    lengths = torch.full((batch,), setting.words, dtype=torch.long)

    def step() -> None:
        loss = vsrn.hardest_negative_triplet_loss(img_enc(regions), txt_enc(ids, lengths), 0.2, True)
        optimizer_step(loss, optimizer, params, grad_clip=2.0)

    return step


def ucch_step(model: str, batch: int, setting: Setting) -> Step:
    """UCCH after warm-up: NCE against K memory codes + cross-modal ranking loss, on fc7 / Doc2Vec vectors."""
    from fico_ucch import train as ucch
    from fico_ucch.model import UcchConfig, build_nets

    cfg, _ = ucch.resolve_model_config(model, "default")
    architecture = UcchConfig.from_dict(cfg).architecture
    opts = ucch.Options.from_dict({})
    image_net, text_net = build_nets(architecture, norm=True)
    image_net.train()
    text_net.train()
    memory = ucch.CodeMemory(F30K_IMAGES, architecture.bits, K=opts.K, T=opts.T, momentum=opts.momentum, device="cpu")
    params = [*image_net.parameters(), *text_net.parameters()]
    optimizer = torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.wd)
    images, texts = torch.rand(batch, architecture.image_dim), torch.randn(batch, architecture.text_dim)
    index = torch.arange(batch)

    def step() -> None:
        u, v = image_net(images), text_net(texts)
        out_u, out_v = memory.scores(u, v, index, True)
        loss = opts.alpha * (ucch.nce_softmax_loss(out_u) + ucch.nce_softmax_loss(out_v))
        loss = loss + (1 - opts.alpha) * ucch.cross_modal_ranking_loss(u, v, opts.margin, opts.shift)
        optimizer_step(loss, optimizer, params, grad_clip=opts.grad_clip)

    return step


def dadh_step(model: str, batch: int, setting: Setting) -> Step:
    """DADH: generator forward, the feature and hash discriminator updates (gradient penalty), then the
    generator's triplet + quantisation + adversarial loss, as fico_dadh.train's inner loop."""
    import torch.nn.functional as F
    from fico_dadh import train as dadh
    from fico_dadh.model import DadhConfig, build_generator

    cfg, _ = dadh.resolve_model_config(model, "default")
    architecture = DadhConfig.from_dict({**cfg, "image_mean": None, "image_std": None}).architecture
    opts = dadh.Options.from_dict({})
    gen = build_generator(architecture)
    gen.train()
    dis = dadh.Discriminator(architecture.image_widths[-1], architecture.image_widths[-1] // 2, architecture.bits)
    optimizer = torch.optim.Adam(gen.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    dis_opts = {
        part: torch.optim.Adam(getattr(dis, f"{part}_dis").parameters(), lr=opts.lr, betas=(0.5, 0.9))
        for part in ("feature", "hash")
    }
    image, text = torch.randn(batch, architecture.image_dim), torch.randn(batch, architecture.text_dim)
    labels = (torch.rand(batch, setting.dadh_classes) < 0.15).float()
    codes = torch.randn(batch, architecture.bits).sign()
    flag = opts.beta * opts.gamma

    def step() -> None:
        h_i, h_t, f_i, f_t = gen(image, text)
        h_t_second = gen.hash_module["text"](gen.text_module(text).detach())
        dadh.discriminator_step(
            dis.dis_feature, f_i.detach(), f_t.detach(), dis_opts["feature"], opts.gamma, opts.gradient_penalty
        )
        dadh.discriminator_step(
            dis.dis_hash, h_i.detach(), h_t.detach(), dis_opts["hash"], opts.gamma, opts.gradient_penalty
        )
        adversarial = -F.logsigmoid(dis.dis_feature(f_t)).mean() - F.logsigmoid(dis.dis_hash(h_t_second)).mean()
        triplets = dadh.triplet_loss(
            h_i, h_t, labels, margin=opts.margin, alpha=opts.alpha, flag=flag
        ) + dadh.triplet_loss(h_t, h_i, labels, margin=opts.margin, alpha=opts.alpha, flag=flag)
        quantisation = ((codes - h_i) ** 2).sum() + ((codes - h_t) ** 2).sum()
        loss = opts.alpha * triplets + (opts.beta + 0.1) * quantisation + opts.gamma * adversarial
        optimizer_step(loss, optimizer, [])

    return step


BUILDERS: Mapping[str, Callable[[str, int, Setting], Step]] = {
    "adv-64": adv_step,
    "adv-2048": adv_step,
    "scan": cross_attention_step,
    "imram": cross_attention_step,
    "vsrn": vsrn_step,
    "ucch": ucch_step,
    "dadh": dadh_step,
}
PER_CAPTION = {"adv-64", "adv-2048", "scan", "imram", "vsrn"}
DROP_LAST = {"ucch"}


# -- measuring ------------------------------------------------------------------------------------------
class MatmulFlops(TorchDispatchMode):
    """FlopCounterMode's per-op formulas (torch.utils.flop_counter.flop_registry) without its module
    tracker, whose backward hooks refuse autograd.grad (DADH's gradient penalty)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(model: str, batch: int, setting: Setting) -> float:
    torch.manual_seed(0)
    step = BUILDERS[model](model, batch, setting)
    with MatmulFlops() as counter:
        step()
    return float(counter.total)


def seconds_per_step(model: str, batch: int, setting: Setting, steps: int) -> float:
    torch.manual_seed(0)
    step = BUILDERS[model](model, batch, setting)
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def fit(b1: int, f1: float, b2: int, f2: float) -> tuple[float, float]:
    """(a, c) with a b + c b^2 through both points."""
    c = (f2 / b2 - f1 / b1) / (b2 - b1)
    return f1 / b1 - c * b1, c


def recipe_plan(model: str) -> dict[str, Any]:
    from fico_registry.plugin_api.registry import get_trainer_spec

    defaults = get_trainer_spec(model).defaults
    batch, epochs = int(defaults["batch_size"]), int(defaults["epochs"])
    samples = F30K_CAPTIONS if model in PER_CAPTION else F30K_IMAGES
    steps = samples // batch if model in DROP_LAST else math.ceil(samples / batch)
    return {
        "batch": batch,
        "epochs": epochs,
        "samples": samples,
        "unit": "caption" if model in PER_CAPTION else "image",
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="4,8,16", help="b1,b2,b3: fit on b1, b2; check on b3; CPU time at b3")
    parser.add_argument("--steps", type=int, default=2, help="timed CPU steps (after one warm-up)")
    parser.add_argument("--words", type=int, default=14, help="word tokens per caption (SCAN / IMRAM / VSRN)")
    parser.add_argument("--dadh-classes", type=int, default=24)
    parser.add_argument("--peak-tflops", type=float, default=19.5, help="GPU peak (A100 fp32: 19.5)")
    parser.add_argument("--utilisation", type=float, default=0.30, help="sustained fraction of the peak")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b1, b2, b3 = (int(x) for x in args.batches.split(","))
    setting = Setting(words=args.words, dadh_classes=args.dadh_classes)
    throughput = args.peak_tflops * 1e12 * args.utilisation
    print(
        f"hours = GFLOP/step x steps/epoch x epochs / ({args.peak_tflops:g} TFLOP/s x {args.utilisation:g}) / 3600; "
        f"FLOPs: matmul/conv (torch.utils.flop_counter formulas), fitted a*B + c*B^2 on batches {b1},{b2}, checked at "
        f"{b3}; "
        f"CPU: {args.threads} thread(s), batch {b3}"
    )
    header = (
        f"{'model':9} {'batch':>5} {'unit':>7} {'steps/ep':>8} {'epochs':>6} {'GFLOP/step':>11} {'fit err':>7} "
        f"{'PFLOP total':>11} {'GPU hours':>9} {'CPU s/step@b3':>13} {'CPU GFLOP/s':>11}"
    )
    print(header)
    print("-" * len(header))
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        if model not in BUILDERS:
            raise SystemExit(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
        plan = recipe_plan(model)
        f1, f2, f3 = (count_flops(model, b, setting) for b in (b1, b2, b3))
        a, c = fit(b1, f1, b2, f2)
        predicted = a * b3 + c * b3 * b3
        per_step = a * plan["batch"] + c * plan["batch"] ** 2
        total = per_step * plan["steps"] * plan["epochs"]
        hours = total / throughput / 3600
        cpu = seconds_per_step(model, b3, setting, args.steps)
        print(
            f"{model:9} {plan['batch']:5d} {plan['unit']:>7} {plan['steps']:8d} {plan['epochs']:6d} "
            f"{per_step / 1e9:11.1f} "
            f"{abs(predicted - f3) / f3:7.1%} {total / 1e15:11.1f} {hours:9.2f} {cpu:13.2f} {f3 / cpu / 1e9:11.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
