"""Training UCCH the way UCCH.py does in feature mode, writing its `.t7` checkpoints.

Per batch of training instances (an image's VGG-19 fc7 vector and one of its captions' Doc2Vec
vector; the original datasets hold one text vector per image), with the networks' tanh -> L2
outputs u (images) and v (texts):
  Lc = NCE softmax loss of u and of v against binary codes: the instance's own memory entry and K
       entries drawn at random (after the warm-up epochs), or the batch's own sign((u+v)/2) codes
       (warm-up); scores = sign(code) . output / (T sqrt(bits))        (NCE/NCEAverage.py)
  Lr = cross-modal ranking loss on u.v^T: pairs within `margin` of the positive keep their score,
       the others are shifted down by `shift`, then a softmax ranking loss both ways  (src/utils.py)
  loss = alpha Lc + (1 - alpha) Lr; Adam(lr 1e-4, weight decay 1e-6); gradient norm clipped at 1;
  lr x0.1 at epochs 30/60/90/120 ("linear") or cosine ("cos"), as UCCH.py steps its scheduler.
The memory then moves each instance's entry towards normalise((u+v)/2) with momentum 0.4 (0 during
warm-up). Model selection: mean category mAP (i2t, t2i) of the sign codes on the VALIDATION split
(UCCH.py evaluated on training data). Deviations, on purpose: a checkpoint every epoch (the last
one, plus the best), resumable (memory and optimizer kept under "fico_resume"), re-seeded each epoch
so a resumed run equals an uninterrupted one.

Under torchrun `batch_size` is the global batch: every rank encodes its share (DistributedDataParallel),
the outputs are all-gathered with gradients back into the batch's order, and every rank computes both
losses and applies the memory draws and update for the whole batch, so the memory stays the same on
every rank and the run equals one process's (up to float summation order). Only rank 0 writes.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fico_registry.errors import ConfigError
from fico_registry.plugin_api.checkpoints import strict_load_state_dict

from .model import UcchConfig, build_nets
from .nets import HashMLP
from .plugin import TRAIN_DEFAULTS

log = logging.getLogger(__name__)
MILESTONES = (30, 60, 90, 120)  # UCCH.py's MultiStepLR for --ls linear


@dataclass(frozen=True)
class Options:
    epochs: int
    batch_size: int
    eval_batch_size: int
    lr: float
    wd: float
    optimizer: str
    ls: str
    alpha: float
    momentum: float
    K: int
    T: float
    shift: float
    margin: float
    warmup_epoch: int
    grad_clip: float
    arch: str
    text_sample: str
    select_by: str
    image_features: Any
    text_features: Any
    config: Any = "default"
    seed: int = 0
    resume: bool = True
    precision: str = "fp32"

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> Options:
        merged = {**TRAIN_DEFAULTS, **options}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ConfigError(f"unknown UCCH training options {unknown}; known: {sorted(known)}")
        opts = cls(**merged)
        for name in ("epochs", "batch_size", "eval_batch_size", "K"):
            value = getattr(opts, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"UCCH training option {name} must be a positive integer, got {value!r}")
        if opts.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: the losses contrast instances within a batch")
        if opts.optimizer not in ("Adam", "SGD"):
            raise ConfigError(f"optimizer must be 'Adam' or 'SGD', got {opts.optimizer!r}")
        if opts.ls not in ("linear", "cos"):
            raise ConfigError(f"ls must be 'linear' (steps at 30/60/90/120) or 'cos', got {opts.ls!r}")
        if opts.select_by not in ("map", "rsum"):
            raise ConfigError(f"select_by must be 'map' or 'rsum', got {opts.select_by!r}")
        if not 0 <= opts.momentum < 1 or not 0 <= opts.alpha <= 1 or opts.T <= 0:
            raise ConfigError("need 0 <= momentum < 1, 0 <= alpha <= 1 and T > 0")
        return opts


def learning_rate(epoch: int, opts: Options) -> float:
    """The lr UCCH.py trains epoch `epoch` with: its scheduler is stepped with the previous epoch's index."""
    if epoch == 0:
        return opts.lr
    if opts.ls == "cos":
        return 0.5 * opts.lr * (1 + math.cos(math.pi * (epoch - 1) / opts.epochs))
    return opts.lr * 0.1 ** bisect.bisect_right(MILESTONES, epoch - 1)


# -- the losses ---------------------------------------------------------------------------------------
class CodeMemory:
    """NCEAverage: one L2-normalised entry per training instance, compared through its sign.

    Initialised like the original: sign(2 s z - s), z ~ N(0, 1), s = 1 / sqrt(bits / 3), normalised
    (so about 31% of the bits start at +1), which is what `randn(...).mul_(2 * stdv).add_(-stdv)` gives.
    """

    def __init__(self, n: int, bits: int, *, K: int, T: float, momentum: float, device: str) -> None:
        stdv = 1.0 / math.sqrt(bits / 3)
        start = torch.randn(n, bits).mul_(2 * stdv).add_(-stdv)
        self.memory = F.normalize(start.sign(), dim=1).to(device)
        self.K, self.momentum = K, momentum
        self.temperature = T * math.sqrt(bits)

    def scores(self, images: torch.Tensor, texts: torch.Tensor, index: torch.Tensor, warm: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1 + negatives) scores of the image and the text outputs; column 0 is the positive.
        Updates the memory entries of `index` afterwards (momentum 0 while not `warm`)."""
        batch = images.shape[0]
        momentum = self.momentum if warm else 0.0
        if momentum <= 0:  # in-batch: row i = [i, every j != i] of the batch's own codes
            own = torch.arange(batch, device=images.device)
            others = own.expand(batch, batch)[~torch.eye(batch, dtype=torch.bool, device=images.device)].view(batch, batch - 1)
            codes = ((images + texts) / 2).detach()[torch.cat([own[:, None], others], dim=1)]
        else:
            draw = torch.randint(0, self.memory.shape[0], (batch, self.K + 1), device=images.device)
            draw[:, 0] = index
            codes = self.memory[draw]
        codes = codes.sign()
        out_images = torch.bmm(codes, images.unsqueeze(2)).squeeze(2) / self.temperature
        out_texts = torch.bmm(codes, texts.unsqueeze(2)).squeeze(2) / self.temperature
        with torch.no_grad():
            mean = (images + texts).detach().float() / 2
            mean = mean / mean.norm(dim=1, keepdim=True)
            moved = self.memory[index] * momentum + mean * (1 - momentum)
            self.memory[index] = moved / moved.norm(dim=1, keepdim=True)
        return out_images, out_texts


def nce_softmax_loss(scores: torch.Tensor) -> torch.Tensor:
    """-log softmax(scores)[:, 0], averaged (NCESoftmaxLoss; log_softmax instead of log(softmax) for stability)."""
    return -F.log_softmax(scores, dim=1)[:, 0].mean()


def cross_modal_ranking_loss(images: torch.Tensor, texts: torch.Tensor, margin: float, shift: float, tau: float = 1.0) -> torch.Tensor:
    """src/utils.py ContrastiveLoss.forward(im, s): both directions of a softmax ranking over u.v^T."""
    scores = images @ texts.T
    positive = scores.diag()
    keep_rows = (scores >= positive[:, None] - margin).float().detach()  # caption retrieval, per image row
    keep_cols = (scores >= positive[None, :] - margin).float().detach()  # image retrieval, per caption column
    cost_rows = scores * keep_rows + (1 - keep_rows) * (scores - shift)
    cost_cols = scores * keep_cols + (1 - keep_cols) * (scores - shift)
    rows = (-cost_rows.diag() + tau * torch.logsumexp(cost_rows / tau, dim=1) + margin).mean()
    cols = (-cost_cols.diag() + tau * torch.logsumexp(cost_cols / tau, dim=0) + margin).mean()
    return rows + cols


# -- validation ---------------------------------------------------------------------------------------
@torch.no_grad()
def codes_of(net: HashMLP, features: np.ndarray, batch: int, device: str) -> torch.Tensor:
    net.eval()
    parts = [net(torch.from_numpy(features[s : s + batch]).to(device)).sign().cpu() for s in range(0, len(features), batch)]
    codes = torch.cat(parts)
    return torch.where(codes >= 0, 1, -1).to(torch.int8)


def validate(image_net: HashMLP, text_net: HashMLP, val: Any, image_features: np.ndarray, text_features: np.ndarray,
             opts: Options, device: str) -> dict[str, Any]:
    """Category mAP (whole ranking) and instance recalls of the sign codes on the validation split."""
    from fico_registry.evaluator.evaluate import evaluate_embeddings
    from fico_registry.training.common import validation_rsum

    images = codes_of(image_net, image_features, opts.eval_batch_size, device)
    texts = codes_of(text_net, text_features, opts.eval_batch_size, device)
    report = evaluate_embeddings(images, texts, val.caption_to_image, val.labels, measure="hamming", map_ks=(None,),
                                 device="cpu", progress=False)
    out: dict[str, Any] = {"rsum": validation_rsum(report), "instance": report.instance}
    if val.labels is not None:
        out["map_i2t"] = float(report.category["i2t"]["mAP@N"])
        out["map_t2i"] = float(report.category["t2i"]["mAP@N"])
        out["map_avg"] = (out["map_i2t"] + out["map_t2i"]) / 2
    out["score"] = out["map_avg"] if opts.select_by == "map" else out["rsum"]
    return out


# -- training -----------------------------------------------------------------------------------------
def resolve_model_config(model: str, config: Any) -> tuple[dict[str, Any], str | None]:
    from fico_registry.plugin_api.registry import get_model_spec

    spec = get_model_spec(model)
    if isinstance(config, str):
        if config not in spec.configs:
            raise ConfigError(f"{spec.name} has no config {config!r}; it has: {', '.join(spec.configs)}")
        return dict(spec.configs[config]), config
    if isinstance(config, Mapping):
        return {**spec.configs["default"], **config}, None
    raise ConfigError(f"config must be a config name or a dict, got {type(config).__name__}")


def feature_configs(opts: Options, config_name: str | None) -> tuple[Any, Any]:
    """vgg19-fc7 / doc2vec configs: as asked, else the one the evaluator pairs with the model config."""
    automatic = "tiny" if config_name == "tiny" else "default"
    image = opts.image_features if opts.image_features is not None else automatic
    text = opts.text_features if opts.text_features is not None else (image if isinstance(image, str) else automatic)
    return image, text


def checkpoint_names(opts: Options, bits: int) -> tuple[str, str]:
    return f"{opts.arch}_{bits}_last_checkpoint.t7", f"{opts.arch}_{bits}_best_checkpoint.t7"


def train(*, model: str, train: Any, val: Any, out: Path, options: Mapping[str, Any], device: str = "cpu",
          progress: bool = False) -> dict[str, Any]:
    """Train `ucch` on `train`, select on `val`; `.t7` checkpoints (UCCH.py's layout) and inputs.json in `out`."""
    from fico_features.run_inputs import CaptionSampler, run_inputs

    from fico_registry.evaluator.sharded import is_main_process, rank, world_size
    from fico_registry.training import _dist
    from fico_registry.training.common import (
        Checkpointer,
        TrainingProgress,
        autocast,
        grad_scaler,
        seed_everything,
        shard,
    )
    from fico_registry.training.sharding import check_world, distributed, in_batch_order

    opts = Options.from_dict(options)
    out, main, world, me = Path(out), is_main_process(), world_size(), rank()
    check_world(opts.batch_size, world)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    cfg, config_name = resolve_model_config(model, opts.config)
    architecture = UcchConfig.from_dict(cfg).architecture
    bar = TrainingProgress(progress, model)

    # inputs: the evaluation pipelines, Doc2Vec fitted on the training captions, saved beside the checkpoints
    image_config, text_config = feature_configs(opts, config_name)
    inputs, (train_images, val_images, train_texts, val_texts) = run_inputs(
        train, val, out, image_config, text_config, device=device, progress=progress, world=world)
    for what, array, width in (("image", train_images, architecture.image_dim), ("text", train_texts, architecture.text_dim)):
        if array.shape[1] != width:
            raise ConfigError(f"the {what} features are {array.shape[1]}-d but the model config expects {width}")
    sampler = CaptionSampler(train.caption_to_image, train.n_images, train_texts, opts.text_sample)
    n = train.n_images
    steps = n // opts.batch_size  # drop_last=True
    if steps == 0:
        raise ConfigError(f"batch_size {opts.batch_size} exceeds the {n} training images (UCCH drops incomplete batches)")
    if opts.select_by == "map" and val.labels is None:
        raise ConfigError(f"{val!r} has no category labels for mAP-based selection: pass --set select_by=rsum")
    if n <= opts.K and main:
        log.warning(
            "ucch: K=%d memory negatives for only %d training instances: each draw holds the positive itself about "
            "%.1f times. UCCH's datasets have 10-100x more instances than K; consider --set K=%d",
            opts.K, n, opts.K / n, max(1, n // 4),
        )

    seed_everything(opts.seed)
    image_net, text_net = build_nets(architecture, norm=bool(cfg.get("norm", True)))
    memory = CodeMemory(n, architecture.bits, K=opts.K, T=opts.T, momentum=opts.momentum, device=device)
    nets = (image_net.to(device), text_net.to(device))
    parameters = [p for net in nets for p in net.parameters()]
    image_run, text_run = (distributed(net, device, world) for net in nets)
    if opts.optimizer == "Adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(parameters, lr=opts.lr, weight_decay=opts.wd)
    else:
        optimizer = torch.optim.SGD(parameters, lr=opts.lr, momentum=0.9, weight_decay=opts.wd)
    scaler = grad_scaler(device, opts.precision)

    last_name, best_name = checkpoint_names(opts, architecture.bits)
    checkpointer = Checkpointer(out, filename=last_name, best_filename=best_name)
    start, best, best_epoch, history = 0, -math.inf, None, []
    state = checkpointer.latest() if opts.resume else None
    if state is not None:
        start, best, best_epoch, history = restore(state, nets, optimizer, scaler, memory, architecture, checkpointer.last_path)
    if start >= opts.epochs and main:
        bar.log(f"{model}: {out} already holds {start} epochs (asked for {opts.epochs}); nothing to train")

    train_images_t = torch.from_numpy(train_images)
    for epoch in range(start, opts.epochs):
        began = time.perf_counter()
        lr = learning_rate(epoch, opts)
        for group in optimizer.param_groups:
            group["lr"] = lr
        seed_everything(opts.seed * 100_003 + epoch)  # memory draws: the same whether resumed or not
        order = torch.from_numpy(np.random.default_rng([opts.seed, epoch]).permutation(n))
        texts_t = torch.from_numpy(sampler.epoch(opts.seed, epoch))
        warm = epoch - opts.warmup_epoch >= 0
        for net in nets:
            net.train()
        total = 0.0
        with bar.epoch(epoch, opts.epochs, steps) as advance:
            for step in range(steps):
                index = order[step * opts.batch_size : (step + 1) * opts.batch_size]
                mine = shard(index, me, world)  # this rank's share of the global batch
                with autocast(device, opts.precision):
                    u = image_run(train_images_t[mine].to(device)).float()
                    v = text_run(texts_t[mine].to(device)).float()
                # the losses and the memory see the whole batch, in its own order, on every rank
                u, v = in_batch_order(u, world), in_batch_order(v, world)
                index = index.to(device)
                out_u, out_v = memory.scores(u, v, index, warm)
                contrastive = nce_softmax_loss(out_u) + nce_softmax_loss(out_v)
                ranking = cross_modal_ranking_loss(u, v, opts.margin, opts.shift)
                loss = opts.alpha * contrastive + (1 - opts.alpha) * ranking
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(parameters, opts.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach())
                advance(1, loss=float(loss.detach()), lr=lr)
        metrics = validate(image_net, text_net, val, val_images, val_texts, opts, device)  # sharded over the ranks
        is_best = bool(_dist.broadcast_object(metrics["score"] > best))  # rank 0 decides
        if is_best:
            best, best_epoch = metrics["score"], epoch
        seconds = time.perf_counter() - began
        history.append({"epoch": epoch, "loss": total / steps, "lr": lr, "seconds": round(seconds, 2),
                        **{k: v for k, v in metrics.items() if k != "instance"}, "val": metrics["instance"]})
        if main:
            state = {
                # UCCH.py's keys (Avg / Img2Txt / Txt2Img: validation mAP of this epoch's codes)
                "image_model_state_dict": image_net.state_dict(),
                "text_model_state_dict": text_net.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(),
                "Avg": metrics.get("map_avg", metrics["score"]),
                "Img2Txt": metrics.get("map_i2t"),
                "Txt2Img": metrics.get("map_t2i"),
                "epoch": epoch,
                # resume-only (UCCH.py ignores it): the code memory, scaler, selection state, run settings
                "fico_resume": {
                    "memory": memory.memory.cpu(), "scaler": scaler.state_dict(), "best": best, "best_epoch": best_epoch,
                    "history": history, "options": _plain(options), "config": cfg, "inputs": inputs.describe(),
                },
            }
            checkpointer.save(epoch, state, is_best=is_best)
            bar.log(f"{model} epoch {epoch + 1}/{opts.epochs}: loss {history[-1]['loss']:.4f}  val {opts.select_by} "
                    f"{metrics['score']:.4f}{'  (best)' if is_best else ''}  [{seconds:.1f}s]")
        if world > 1:
            _dist.barrier()
    best_path = checkpointer.best_path if checkpointer.best_path.exists() else checkpointer.last_path
    return {
        "checkpoint": str(best_path),
        "last_checkpoint": str(checkpointer.last_path),
        "config": config_name if config_name is not None else cfg,
        "best_epoch": best_epoch,
        "best_score": best,
        "select_by": opts.select_by,
        "epochs_run": max(0, opts.epochs - start),
        "history": history,
        "inputs": inputs.describe(),
        "objective": "alpha * NCE contrastive hashing vs momentum code memory + (1 - alpha) * cross-modal ranking",
    }


def restore(state: Mapping[str, Any], nets: tuple[HashMLP, HashMLP], optimizer: torch.optim.Optimizer, scaler: Any,
            memory: CodeMemory, architecture: Any, path: Path) -> tuple[int, float, int | None, list]:
    """Continue a run: weights (strictly), optimizer, memory, epoch counter and best score so far."""
    extra = state.get("fico_resume")
    if not isinstance(extra, Mapping) or "memory" not in extra:
        raise ConfigError(f"{path} has no resume state (not written by `fico train ucch`): use another --out or --no-resume")
    strict_load_state_dict(nets[0], state["image_model_state_dict"], what=f"{path} image_model_state_dict")
    strict_load_state_dict(nets[1], state["text_model_state_dict"], what=f"{path} text_model_state_dict")
    if tuple(extra["memory"].shape) != tuple(memory.memory.shape):
        raise ConfigError(f"{path}: memory {tuple(extra['memory'].shape)} does not fit this run's {tuple(memory.memory.shape)} "
                          "(another training set?): use another --out or --no-resume")
    memory.memory.copy_(extra["memory"])
    optimizer.load_state_dict(state["optimizer_state_dict"])
    if extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    return int(state["epoch"]) + 1, float(extra["best"]), extra.get("best_epoch"), list(extra.get("history", []))


def _plain(options: Mapping[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(dict(options), default=str))
