"""Training DADH the way its main.py does, writing the raw `GEN_module.pth` state dict.

Per batch of training instances (an image's z-scored VGG-19 fc7 vector, one of its captions' Doc2Vec
vector, the image's multi-hot labels), with GEN's tanh codes h_i, h_t and last hidden features f_i, f_t:
1. feature discriminator D_f, real = f_i, fake = f_t (both detached):
   -gamma log sigmoid(D_f(f_i)) - gamma log(1 - sigmoid(D_f(f_t))) + 10 * gradient penalty on a random
   elementwise mix of the two; one Adam step (betas 0.5, 0.9; weight decay 1e-4). The same for the hash
   discriminator D_h on h_i (real) and h_t (fake).
2. generator: alpha * (triplet(h_i -> h_t) + triplet(h_t -> h_i)) + (beta + 0.1) * |B - h_i|^2 + |B - h_t|^2
   + gamma * (-log sigmoid(D_f(f_t)) - log sigmoid(D_h(h_t'))), where h_t' is the text hash layer on a
   detached second pass of the text branch (GEN.generate_txt_code, which also updates BatchNorm's running
   statistics a second time, as the original). The triplet loss is cosine-distance based over every
   (anchor, positive, negative) of the batch with a label-NDCG weight when alpha == 10 (triplet_loss.py).
   Adam 5e-5, weight decay 5e-4; lr x0.8 after epochs 0, 100, 200, ...
3. after each epoch, the discrete codes: P = (L^T L + lamb I)^-1 L^T B, B = sign(L P + mu/2 (H_i + H_t)).
Model selection: mean category mAP (i2t, t2i) of the sign codes on the VALIDATION split (main.py's
`valid`). Deviations, on purpose: the last incomplete batch is dropped when it holds a single item
(BatchNorm cannot train on one); logsigmoid instead of log(sigmoid) (equal where finite); every epoch
also writes GEN_module_last.pth and fico_resume.pth (discriminator, optimizers, B, H) so runs resume.

Under torchrun `batch_size` is the global batch: every rank runs GEN (DistributedDataParallel) on its
share, with BatchNorm statistics of the global batch (GlobalBatchNorm1d); the outputs are all-gathered
with gradients back into the batch's order, and every rank runs both discriminator steps, the losses and
the updates of H (and, per epoch, of B) on the whole batch, so all state stays the same on every rank and
the run equals one process's (up to float summation order; with dropout each rank draws its own masks).
A last batch is cut to a multiple of the rank count. Only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import autograd, nn

from fico_registry.errors import ConfigError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint, strict_load_state_dict

from .checkpoint import FILE_NAME, NORM_FILE
from .model import DadhConfig, build_generator
from .nets import Generator
from .plugin import TRAIN_DEFAULTS

LAST_FILE = "GEN_module_last.pth"
RESUME_FILE = "fico_resume.pth"
MIN_LR = 1e-6


@dataclass(frozen=True)
class Options:
    epochs: int
    batch_size: int
    lr: float
    alpha: float
    beta: float
    gamma: float
    mu: float
    lamb: float
    margin: float
    weight_decay: float
    dis_weight_decay: float
    gradient_penalty: float
    lr_decay: float
    lr_decay_every: int
    valid_freq: int
    eval_batch_size: int
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
            raise ConfigError(f"unknown DADH training options {unknown}; known: {sorted(known)}")
        opts = cls(**merged)
        for name in ("epochs", "batch_size", "eval_batch_size", "lr_decay_every", "valid_freq"):
            value = getattr(opts, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"DADH training option {name} must be a positive integer, got {value!r}")
        if opts.batch_size < 2:
            raise ConfigError("batch_size must be at least 2 (BatchNorm and the in-batch triplets)")
        if opts.select_by not in ("map", "rsum"):
            raise ConfigError(f"select_by must be 'map' or 'rsum', got {opts.select_by!r}")
        return opts


def generator_lr(epoch: int, opts: Options) -> float:
    """main.py multiplies the generator's lr by 0.8 after every epoch with epoch % 100 == 0 (0 included)."""
    decays = (epoch + opts.lr_decay_every - 1) // opts.lr_decay_every
    lr = opts.lr
    for _ in range(decays):
        lr = max(lr * opts.lr_decay, MIN_LR)
    return lr


# -- the discriminator (models/dis_model.py; not saved by the original) ---------------------------------
class Discriminator(nn.Module):
    def __init__(self, feature_dim: int, hidden_dim: int, bits: int) -> None:
        super().__init__()
        hidden_dim = max(1, hidden_dim)
        self.feature_dis = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.ReLU(True),
            nn.Linear(hidden_dim, max(1, hidden_dim // 2)), nn.ReLU(True),
            nn.Linear(max(1, hidden_dim // 2), 1),
        )
        self.hash_dis = nn.Sequential(nn.Linear(bits, 512), nn.ReLU(True), nn.Linear(512, 1))
        for module in self.modules():  # DIS.weight_init: kaiming normal weights, zero biases
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def dis_feature(self, features: torch.Tensor) -> torch.Tensor:
        return self.feature_dis(features).squeeze()

    def dis_hash(self, codes: torch.Tensor) -> torch.Tensor:
        return self.hash_dis(codes).squeeze()


def discriminator_step(score: Any, real: torch.Tensor, fake: torch.Tensor, optimizer: torch.optim.Optimizer,
                       gamma: float, penalty: float) -> float:
    """One update of a discriminator: log loss on real / fake, plus the gradient penalty on random mixes."""
    optimizer.zero_grad(set_to_none=True)
    loss_real = -gamma * F.logsigmoid(score(real)).mean()
    loss_real.backward()
    loss_fake = -gamma * F.logsigmoid(-score(fake)).mean()  # log(1 - sigmoid(x)) = logsigmoid(-x)
    loss_fake.backward()
    mix = torch.rand(real.shape, device=real.device)  # elementwise, as the original's alpha
    interpolates = (mix * real + (1 - mix) * fake).requires_grad_()
    out = score(interpolates)
    gradients = autograd.grad(out, interpolates, grad_outputs=torch.ones_like(out), create_graph=True, retain_graph=True)[0]
    gp = ((gradients.view(gradients.shape[0], -1).norm(2, dim=1) - 1) ** 2).mean() * penalty
    gp.backward()
    optimizer.step()
    return float((loss_real + loss_fake + gp).detach())


# -- the triplet loss (triplet_loss.py) ----------------------------------------------------------------
def triplet_weights(labels: torch.Tensor, flag: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, weight), each (anchor, positive, negative): positives share a label with the anchor,
    negatives none; weight = difference of the NDCG-normalised gains (2^shared - 1) / IDCG."""
    batch = labels.shape[0]
    shared = labels @ labels.T
    similar = (shared > 0).float()
    ideal = torch.sort(shared, dim=1, descending=True).values
    discount = torch.log2(torch.arange(batch, dtype=labels.dtype, device=labels.device) + 2)
    idcg = ((2 ** ideal - 1) / discount).sum(dim=1, keepdim=True)
    idcg = torch.where(idcg > 0, idcg, torch.ones_like(idcg))  # an unlabelled item: no gains (the original divides by 0)
    gain = (2 ** shared - 1) / idcg
    weight = (gain.unsqueeze(2) - gain.unsqueeze(1)) * (flag + 0.1)
    mask = similar.unsqueeze(2) * (1 - similar.unsqueeze(1)) * (flag + 0.1)
    return mask, weight


def triplet_loss(source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, *, margin: float, alpha: float,
                 flag: float) -> torch.Tensor:
    """Sum over (anchor in source, positive / negative in target) of [d(a, p) - d(a, n) + margin]_+,
    d = 1 - cosine, weighted by the label gains when alpha == 10 (TripletLoss, reduction 'sum')."""
    distance = (1 - F.cosine_similarity(source.unsqueeze(1), target, dim=-1)).clamp(min=0)
    loss = distance.unsqueeze(2) - distance.unsqueeze(1) + margin
    mask, weight = triplet_weights(labels, flag)
    loss = 10 * weight * mask * loss if alpha == 10 else mask * loss
    return loss.clamp(min=0).sum()


# -- validation ---------------------------------------------------------------------------------------
@torch.no_grad()
def codes_of(encode: Any, features: np.ndarray, batch: int, device: str) -> torch.Tensor:
    parts = [encode(torch.from_numpy(features[s : s + batch]).to(device)).cpu() for s in range(0, len(features), batch)]
    return torch.where(torch.cat(parts) >= 0, 1, -1).to(torch.int8)


def validate(gen: Generator, val: Any, image_features: np.ndarray, text_features: np.ndarray, opts: Options,
             device: str) -> dict[str, Any]:
    from fico_registry.evaluator.evaluate import evaluate_embeddings
    from fico_registry.training.common import validation_rsum

    gen.eval()
    images = codes_of(gen.image_codes, image_features, opts.eval_batch_size, device)
    texts = codes_of(gen.text_codes, text_features, opts.eval_batch_size, device)
    gen.train()
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
    automatic = "tiny" if config_name == "tiny" else "default"
    image = opts.image_features if opts.image_features is not None else automatic
    text = opts.text_features if opts.text_features is not None else (image if isinstance(image, str) else automatic)
    return image, text


def write_image_norm(folder: Path, mean: float, std: float, source: str) -> None:
    path = folder / NORM_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"mean": mean, "std": std, "computed_on": source}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- torch.distributed -------------------------------------------------------------------------------
class GeneratorStep(nn.Module):
    """GEN's training forward: (h_i, h_t, f_i, f_t) and h_t', the text hash layer on a detached second
    pass of the text branch (GEN.generate_txt_code). One module, so that DistributedDataParallel sees
    every use of the generator's parameters in a step."""

    def __init__(self, gen: Generator) -> None:
        super().__init__()
        self.gen = gen

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h_i, h_t, f_i, f_t = self.gen(images, texts)
        h_t_second = self.gen.hash_module["text"](self.gen.text_module(texts).detach())
        return h_i, h_t, f_i, f_t, h_t_second


def rank_dropout(enabled: bool, seed: list[int], device: str) -> Any:
    """Under torchrun with dropout: this rank's own dropout masks, drawn from a forked generator, so that
    the shared stream (the discriminators' mixes) stays the same on every rank."""
    if not enabled:
        return contextlib.nullcontext()
    return _forked_rng(int(np.random.default_rng(seed).integers(1 << 62)), device)


@contextlib.contextmanager
def _forked_rng(seed: int, device: str) -> Iterator[None]:
    on_cuda = torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=[torch.device(device)] if on_cuda else []):
        torch.manual_seed(seed)
        yield


def train(*, model: str, train: Any, val: Any, out: Path, options: Mapping[str, Any], device: str = "cpu",
          progress: bool = False) -> dict[str, Any]:
    """Train `dadh` on `train` (labels required), select on `val`; GEN_module.pth (raw GEN state dict) in `out`."""
    from fico_features.run_inputs import CaptionSampler, run_inputs

    from fico_registry.evaluator.sharded import is_main_process, rank, world_size
    from fico_registry.training import _dist
    from fico_registry.training.common import (
        Checkpointer,
        TrainingProgress,
        atomic_save,
        autocast,
        seed_everything,
        shard,
    )
    from fico_registry.training.sharding import check_world, distributed, globalise_batchnorms, in_batch_order

    opts = Options.from_dict(options)
    out, main, world, me = Path(out), is_main_process(), world_size(), rank()
    check_world(opts.batch_size, world)
    cfg, config_name = resolve_model_config(model, opts.config)
    architecture = DadhConfig.from_dict({**cfg, "image_mean": None, "image_std": None}).architecture
    bar = TrainingProgress(progress, model)
    if train.labels is None:
        raise ConfigError(f"DADH is supervised: {train!r} has no category labels (multi-hot, one row per image)")
    if opts.select_by == "map" and val.labels is None:
        raise ConfigError(f"{val!r} has no category labels for mAP-based selection: pass --set select_by=rsum")
    if main:
        out.mkdir(parents=True, exist_ok=True)

    image_config, text_config = feature_configs(opts, config_name)
    inputs, (train_images, val_images, train_texts, val_texts) = run_inputs(
        train, val, out, image_config, text_config, device=device, progress=progress, world=world)
    for what, array, width in (("image", train_images, architecture.image_dim), ("text", train_texts, architecture.text_dim)):
        if array.shape[1] != width:
            raise ConfigError(f"the {what} features are {array.shape[1]}-d but the model config expects {width}")
    # datasets/data_handler.py: one scalar mean and std over the whole image-feature matrix
    mean, std = float(train_images.mean(dtype=np.float64)), float(train_images.std(dtype=np.float64))
    if not std > 0:
        raise ConfigError("the training image features are constant: nothing to standardise")
    if main:
        write_image_norm(out, mean, std, f"{train.name}/{train.split} ({train.n_images} images, {inputs.fingerprint('image')})")
    train_images = (train_images - mean) / std
    val_images = ((val_images - mean) / std).astype(np.float32)
    sampler = CaptionSampler(train.caption_to_image, train.n_images, train_texts, opts.text_sample)
    labels = torch.from_numpy(np.asarray(train.labels, dtype=np.float32)).to(device)
    n, bits = train.n_images, architecture.bits

    seed_everything(opts.seed)
    gen = build_generator(architecture)
    if world > 1:
        globalise_batchnorms(gen)  # BatchNorm statistics of the global batch, as one process computes them
    gen = gen.to(device)
    step_run = distributed(GeneratorStep(gen), device, world)
    dis = Discriminator(architecture.image_widths[-1], architecture.image_widths[-1] // 2, bits).to(device)
    optimizer = torch.optim.Adam(
        [{"params": gen.image_module.parameters()}, {"params": gen.text_module.parameters()},
         {"params": gen.hash_module.parameters()}], lr=opts.lr, weight_decay=opts.weight_decay)
    dis_optimizers = {
        part: torch.optim.Adam(getattr(dis, f"{part}_dis").parameters(), lr=opts.lr, betas=(0.5, 0.9),
                               weight_decay=opts.dis_weight_decay)
        for part in ("feature", "hash")
    }
    codes = torch.randn(n, bits).sign().to(device)  # B
    hashes = {"image": torch.zeros(n, bits, device=device), "text": torch.zeros(n, bits, device=device)}  # H_i, H_t

    checkpointer = Checkpointer(out, filename=LAST_FILE, best_filename=FILE_NAME)
    resume_path = out / RESUME_FILE
    start, best, best_epoch, history = 0, -math.inf, None, []
    if opts.resume and resume_path.is_file():
        start, best, best_epoch, history = restore(load_torch_checkpoint(resume_path), gen, dis, optimizer, dis_optimizers,
                                                   codes, hashes, resume_path)
    if start >= opts.epochs and main:
        bar.log(f"{model}: {out} already holds {start} epochs (asked for {opts.epochs}); nothing to train")

    images_t = torch.from_numpy(np.ascontiguousarray(train_images, dtype=np.float32))
    flag = opts.beta * opts.gamma  # main.py: beta += 0.1, then the triplet mask uses (beta - 0.1) * gamma
    for epoch in range(start, opts.epochs):
        began = time.perf_counter()
        lr = generator_lr(epoch, opts)
        for group in optimizer.param_groups:
            group["lr"] = lr
        seed_everything(opts.seed * 100_003 + epoch)  # dropout, mixes: the same whether resumed or not
        order = np.random.default_rng([opts.seed, epoch]).permutation(n)
        batches = [order[s : s + opts.batch_size] for s in range(0, n, opts.batch_size)]
        # every rank takes its share (`shard`) of each batch; a last batch is cut to a multiple of the rank
        # count, and dropped when that leaves a single item (BatchNorm cannot train on one; the original
        # would fail here)
        batches = [b[: len(b) - len(b) % world] for b in batches]
        batches = [b for b in batches if len(b) >= 2]
        texts_t = torch.from_numpy(sampler.epoch(opts.seed, epoch))
        gen.train()
        total = 0.0
        with bar.epoch(epoch, opts.epochs, len(batches)) as advance:
            for step, batch in enumerate(batches):
                index = torch.from_numpy(batch).to(device)
                mine = shard(batch, me, world)
                image, text = images_t[mine].to(device), texts_t[mine].to(device)
                label = labels[index]
                with rank_dropout(architecture.dropout and world > 1, [opts.seed, epoch, step, me], device), \
                        autocast(device, opts.precision):
                    parts = step_run(image, text)
                # everything below sees the whole batch, in its own order, on every rank
                h_i, h_t, f_i, f_t, h_t_second = (in_batch_order(x.float(), world) for x in parts)
                hashes["image"][index] = h_i.detach()
                hashes["text"][index] = h_t.detach()
                discriminator_step(dis.dis_feature, f_i.detach(), f_t.detach(), dis_optimizers["feature"], opts.gamma,
                                   opts.gradient_penalty)
                discriminator_step(dis.dis_hash, h_i.detach(), h_t.detach(), dis_optimizers["hash"], opts.gamma,
                                   opts.gradient_penalty)
                adversarial = -F.logsigmoid(dis.dis_feature(f_t)).mean() - F.logsigmoid(dis.dis_hash(h_t_second)).mean()
                triplets = (triplet_loss(h_i, h_t, label, margin=opts.margin, alpha=opts.alpha, flag=flag)
                            + triplet_loss(h_t, h_i, label, margin=opts.margin, alpha=opts.alpha, flag=flag))
                quantisation = ((codes[index] - h_i) ** 2).sum() + ((codes[index] - h_t) ** 2).sum()
                loss = opts.alpha * triplets + (opts.beta + 0.1) * quantisation + opts.gamma * adversarial
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                advance(1, loss=float(loss.detach()), lr=lr)
        # the discrete update of B from the labels and this epoch's codes
        ridge = labels.T @ labels + opts.lamb * torch.eye(labels.shape[1], device=device)
        projection = torch.linalg.solve(ridge, labels.T @ codes)
        codes = torch.sign(labels @ projection + 0.5 * opts.mu * (hashes["image"] + hashes["text"]))
        metrics = None
        if (epoch + 1) % opts.valid_freq == 0 or epoch + 1 == opts.epochs:
            metrics = validate(gen, val, val_images, val_texts, opts, device)  # sharded over the ranks
        is_best = metrics is not None and bool(_dist.broadcast_object(metrics["score"] > best))  # rank 0 decides
        if is_best:
            best, best_epoch = metrics["score"], epoch
        seconds = time.perf_counter() - began
        entry: dict[str, Any] = {"epoch": epoch, "loss": total / max(1, len(batches)), "lr": lr, "seconds": round(seconds, 2)}
        if metrics is not None:
            entry.update({k: v for k, v in metrics.items() if k != "instance"}, val=metrics["instance"])
        history.append(entry)
        if main:
            checkpointer.save(epoch, gen.state_dict(), is_best=is_best)  # the raw GEN state dict, as main.py's save_model
            atomic_save({
                "epoch": epoch + 1, "generator": gen.state_dict(), "discriminator": dis.state_dict(),
                "optimizer": optimizer.state_dict(), "dis_feature": dis_optimizers["feature"].state_dict(),
                "dis_hash": dis_optimizers["hash"].state_dict(), "B": codes.cpu(), "H_i": hashes["image"].cpu(),
                "H_t": hashes["text"].cpu(), "best": best, "best_epoch": best_epoch, "history": history,
                "options": json.loads(json.dumps(dict(options), default=str)), "config": cfg, "inputs": inputs.describe(),
            }, resume_path)
            score = "" if metrics is None else f"  val {opts.select_by} {metrics['score']:.4f}{'  (best)' if is_best else ''}"
            bar.log(f"{model} epoch {epoch + 1}/{opts.epochs}: loss {entry['loss']:.4f}{score}  [{seconds:.1f}s]")
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
        "image_norm": {"mean": mean, "std": std},
        "inputs": inputs.describe(),
        "objective": "alpha * label-weighted triplet + (beta + 0.1) * quantisation to B + gamma * adversarial (WGAN-GP discriminators)",
    }


def restore(state: Mapping[str, Any], gen: Generator, dis: Discriminator, optimizer: torch.optim.Optimizer,
            dis_optimizers: dict[str, torch.optim.Optimizer], codes: torch.Tensor, hashes: dict[str, torch.Tensor],
            path: Path) -> tuple[int, float, int | None, list]:
    """Continue a run from fico_resume.pth: networks (strictly), optimizers, B and H, epoch counter, best score."""
    for key in ("epoch", "generator", "discriminator", "B"):
        if key not in state:
            raise ConfigError(f"{path} lacks {key!r}: not a resume file of `fico train dadh`; use another --out or --no-resume")
    if tuple(state["B"].shape) != tuple(codes.shape):
        raise ConfigError(f"{path}: codes {tuple(state['B'].shape)} do not fit this run's {tuple(codes.shape)} "
                          "(another training set or bit count?): use another --out or --no-resume")
    strict_load_state_dict(gen, state["generator"], what=f"{path} generator")
    strict_load_state_dict(dis, state["discriminator"], what=f"{path} discriminator")
    optimizer.load_state_dict(state["optimizer"])
    dis_optimizers["feature"].load_state_dict(state["dis_feature"])
    dis_optimizers["hash"].load_state_dict(state["dis_hash"])
    codes.copy_(state["B"])
    hashes["image"].copy_(state["H_i"])
    hashes["text"].copy_(state["H_t"])
    return int(state["epoch"]), float(state["best"]), state.get("best_epoch"), list(state.get("history", []))
