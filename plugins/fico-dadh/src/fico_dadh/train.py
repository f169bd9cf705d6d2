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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import autograd, nn

from fico_registry.errors import ConfigError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint, strict_load_state_dict
from fico_registry.plugin_api.training import (
    code_validation,
    loop,
    resolve_model_config,  # noqa: F401 (used by bench_train_cost.py, tests)
)

from .checkpoint import FILE_NAME, NORM_FILE
from .model import DadhConfig, build_generator
from .nets import Generator
from .plugin import TRAIN_DEFAULTS

LAST_FILE = "GEN_module_last.pth"
RESUME_FILE = "fico_resume.pth"
MIN_LR = 1e-6


@dataclass(frozen=True)
class Options(loop.RecipeOptions):
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

    DEFAULTS = TRAIN_DEFAULTS
    TITLE = "DADH"
    POSITIVE = ("epochs", "batch_size", "eval_batch_size", "lr_decay_every", "valid_freq")

    def check(self) -> None:
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2 (BatchNorm and the in-batch triplets)")
        if self.select_by not in code_validation.SELECT_BY:
            raise ConfigError(f"select_by must be 'map' or 'rsum', got {self.select_by!r}")


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
            nn.Linear(feature_dim, hidden_dim),
            nn.ReLU(True),
            nn.Linear(hidden_dim, max(1, hidden_dim // 2)),
            nn.ReLU(True),
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


def discriminator_step(
    score: Any, real: torch.Tensor, fake: torch.Tensor, optimizer: torch.optim.Optimizer, gamma: float, penalty: float
) -> float:
    """One update of a discriminator: log loss on real / fake, plus the gradient penalty on random mixes."""
    optimizer.zero_grad(set_to_none=True)
    loss_real = -gamma * F.logsigmoid(score(real)).mean()
    loss_real.backward()
    loss_fake = -gamma * F.logsigmoid(-score(fake)).mean()  # log(1 - sigmoid(x)) = logsigmoid(-x)
    loss_fake.backward()
    mix = torch.rand(real.shape, device=real.device)  # elementwise, as the original's alpha
    interpolates = (mix * real + (1 - mix) * fake).requires_grad_()
    out = score(interpolates)
    gradients = autograd.grad(
        out, interpolates, grad_outputs=torch.ones_like(out), create_graph=True, retain_graph=True
    )[0]
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
    idcg = ((2**ideal - 1) / discount).sum(dim=1, keepdim=True)
    idcg = torch.where(
        idcg > 0, idcg, torch.ones_like(idcg)
    )  # an unlabelled item: no gains (the original divides by 0)
    gain = (2**shared - 1) / idcg
    weight = (gain.unsqueeze(2) - gain.unsqueeze(1)) * (flag + 0.1)
    mask = similar.unsqueeze(2) * (1 - similar.unsqueeze(1)) * (flag + 0.1)
    return mask, weight


def triplet_loss(
    source: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, *, margin: float, alpha: float, flag: float
) -> torch.Tensor:
    """Sum over (anchor in source, positive / negative in target) of [d(a, p) - d(a, n) + margin]_+,
    d = 1 - cosine, weighted by the label gains when alpha == 10 (TripletLoss, reduction 'sum')."""
    distance = (1 - F.cosine_similarity(source.unsqueeze(1), target, dim=-1)).clamp(min=0)
    loss = distance.unsqueeze(2) - distance.unsqueeze(1) + margin
    mask, weight = triplet_weights(labels, flag)
    loss = 10 * weight * mask * loss if alpha == 10 else mask * loss
    return loss.clamp(min=0).sum()


# -- validation ---------------------------------------------------------------------------------------
def validate(
    gen: Generator, val: Any, image_features: np.ndarray, text_features: np.ndarray, opts: Options, device: str
) -> dict[str, Any]:
    gen.eval()
    images = code_validation.sign_codes(gen.image_codes, image_features, opts.eval_batch_size, device)
    texts = code_validation.sign_codes(gen.text_codes, text_features, opts.eval_batch_size, device)
    gen.train()
    return code_validation.validate_codes(images, texts, val, opts.select_by)


# -- training -----------------------------------------------------------------------------------------
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


class DadhRecipe(loop.EpochRecipe):
    """DADH's main.py on the shared epoch loop: discriminator steps, the generator's loss, B updated per epoch."""

    best_key = "best_score"
    initial_best = -math.inf
    first_epoch = 0  # main.py counts epochs from 0
    per_rank_seed = False  # the discriminators' mixes must be the same on every rank

    def __init__(
        self, *, model: str, train: Any, val: Any, out: Path, opts: Options, device: str, progress: bool
    ) -> None:
        from fico_features.run_inputs import CaptionSampler, run_inputs

        from fico_registry.plugin_api.training import Checkpointer, distributed, globalise_batchnorms, seed_everything

        super().__init__(model=model, out=out, opts=opts, device=device)
        self.score_format = f"val {opts.select_by} {{:.4f}}"
        config = DadhConfig.from_dict({**self.cfg, "image_mean": None, "image_std": None})
        self.architecture = architecture = config.architecture
        if train.labels is None:
            raise ConfigError(f"DADH is supervised: {train!r} has no category labels (multi-hot, one row per image)")
        code_validation.check_select_by(opts.select_by, val)
        self.val = val
        features = code_validation.feature_configs(opts.image_features, opts.text_features, self.config_name)
        self.inputs, (train_images, val_images, train_texts, self.val_texts) = run_inputs(
            train, val, self.out, *features, device=device, progress=progress, world=self.world
        )
        code_validation.check_widths(train_images, train_texts, architecture.image_dim, architecture.text_dim)
        # datasets/data_handler.py: one scalar mean and std over the whole image-feature matrix
        mean, std = float(train_images.mean(dtype=np.float64)), float(train_images.std(dtype=np.float64))
        if not std > 0:
            raise ConfigError("the training image features are constant: nothing to standardise")
        if self.main:
            source = f"{train.name}/{train.split} ({train.n_images} images, {self.inputs.fingerprint('image')})"
            write_image_norm(self.out, mean, std, source)
        self.image_norm = {"mean": mean, "std": std}
        self.images = torch.from_numpy(np.ascontiguousarray((train_images - mean) / std, dtype=np.float32))
        self.val_images = ((val_images - mean) / std).astype(np.float32)
        self.sampler = CaptionSampler(train.caption_to_image, train.n_images, train_texts, opts.text_sample)
        self.labels = torch.from_numpy(np.asarray(train.labels, dtype=np.float32)).to(device)
        self.n, bits = train.n_images, architecture.bits

        seed_everything(opts.seed)
        gen = build_generator(architecture)
        if self.world > 1:
            globalise_batchnorms(gen)  # BatchNorm statistics of the global batch, as one process computes them
        self.gen = gen.to(device)
        self.step_run = distributed(GeneratorStep(self.gen), device, self.world)
        self.dis = Discriminator(architecture.image_widths[-1], architecture.image_widths[-1] // 2, bits).to(device)
        self.optimizer = torch.optim.Adam(
            [
                {"params": gen.image_module.parameters()},
                {"params": gen.text_module.parameters()},
                {"params": gen.hash_module.parameters()},
            ],
            lr=opts.lr,
            weight_decay=opts.weight_decay,
        )
        self.dis_optimizers = {
            part: torch.optim.Adam(
                getattr(self.dis, f"{part}_dis").parameters(),
                lr=opts.lr,
                betas=(0.5, 0.9),
                weight_decay=opts.dis_weight_decay,
            )
            for part in ("feature", "hash")
        }
        self.codes = torch.randn(self.n, bits).sign().to(device)  # B
        self.hashes = {side: torch.zeros(self.n, bits, device=device) for side in ("image", "text")}  # H_i, H_t
        self.checkpointer = Checkpointer(self.out, filename=LAST_FILE, best_filename=FILE_NAME)
        self.resume_path = self.out / RESUME_FILE
        self.flag = opts.beta * opts.gamma  # main.py: beta += 0.1, then the triplet mask uses (beta - 0.1) * gamma

    def restore(self) -> loop.LoopState | None:
        """Continue a run from fico_resume.pth: networks (strictly), optimizers, B and H, epoch counter, best score."""
        path = self.resume_path
        if not path.is_file():
            return None
        state = load_torch_checkpoint(path)
        for key in ("epoch", "generator", "discriminator", "B"):
            if key not in state:
                raise ConfigError(
                    f"{path} lacks {key!r}: not a resume file of `fico train dadh`; use another --out or --no-resume"
                )
        if tuple(state["B"].shape) != tuple(self.codes.shape):
            raise ConfigError(
                f"{path}: codes {tuple(state['B'].shape)} do not fit this run's {tuple(self.codes.shape)} "
                "(another training set or bit count?): use another --out or --no-resume"
            )
        strict_load_state_dict(self.gen, state["generator"], what=f"{path} generator")
        strict_load_state_dict(self.dis, state["discriminator"], what=f"{path} discriminator")
        self.optimizer.load_state_dict(state["optimizer"])
        self.dis_optimizers["feature"].load_state_dict(state["dis_feature"])
        self.dis_optimizers["hash"].load_state_dict(state["dis_hash"])
        self.codes.copy_(state["B"])
        self.hashes["image"].copy_(state["H_i"])
        self.hashes["text"].copy_(state["H_t"])
        history = list(state.get("history", []))
        return loop.LoopState(int(state["epoch"]), float(state["best"]), state.get("best_epoch"), 0, history)

    def learning_rate(self, epoch: int) -> float:
        return generator_lr(epoch, self.opts)

    def n_samples(self) -> int:
        return self.n

    def begin_epoch(self, epoch: int, order: np.ndarray) -> list[np.ndarray]:
        size, world = self.opts.batch_size, self.world
        batches = [order[s : s + size] for s in range(0, self.n, size)]
        # every rank takes its share (`shard`) of each batch; a last batch is cut to a multiple of the rank
        # count, and dropped when that leaves a single item (BatchNorm cannot train on one; the original
        # would fail here)
        batches = [b[: len(b) - len(b) % world] for b in batches]
        self.texts = torch.from_numpy(self.sampler.epoch(self.opts.seed, epoch))
        self.gen.train()
        return [b for b in batches if len(b) >= 2]

    def step(self, batch: np.ndarray, epoch: int, step: int) -> float:
        from fico_registry.plugin_api.training import autocast, in_batch_order, shard

        opts, device, world = self.opts, self.device, self.world
        index = torch.from_numpy(batch).to(device)
        mine = shard(batch, self.rank, world)
        image, text = self.images[mine].to(device), self.texts[mine].to(device)
        label = self.labels[index]
        with (
            rank_dropout(self.architecture.dropout and world > 1, [opts.seed, epoch, step, self.rank], device),
            autocast(device, opts.precision),
        ):
            parts = self.step_run(image, text)
        # everything below sees the whole batch, in its own order, on every rank
        h_i, h_t, f_i, f_t, h_t_second = (in_batch_order(x.float(), world) for x in parts)
        self.hashes["image"][index] = h_i.detach()
        self.hashes["text"][index] = h_t.detach()
        dis, dis_optimizers = self.dis, self.dis_optimizers
        discriminator_step(
            dis.dis_feature, f_i.detach(), f_t.detach(), dis_optimizers["feature"], opts.gamma, opts.gradient_penalty
        )
        discriminator_step(
            dis.dis_hash, h_i.detach(), h_t.detach(), dis_optimizers["hash"], opts.gamma, opts.gradient_penalty
        )
        adversarial = -F.logsigmoid(dis.dis_feature(f_t)).mean() - F.logsigmoid(dis.dis_hash(h_t_second)).mean()
        triplets = triplet_loss(h_i, h_t, label, margin=opts.margin, alpha=opts.alpha, flag=self.flag) + triplet_loss(
            h_t, h_i, label, margin=opts.margin, alpha=opts.alpha, flag=self.flag
        )
        quantisation = ((self.codes[index] - h_i) ** 2).sum() + ((self.codes[index] - h_t) ** 2).sum()
        loss = opts.alpha * triplets + (opts.beta + 0.1) * quantisation + opts.gamma * adversarial
        loop.optimizer_step(loss, self.optimizer, [])
        return float(loss.detach())

    def end_epoch(self, epoch: int) -> None:
        """The discrete update of B from the labels and this epoch's codes."""
        labels = self.labels
        ridge = labels.T @ labels + self.opts.lamb * torch.eye(labels.shape[1], device=self.device)
        projection = torch.linalg.solve(ridge, labels.T @ self.codes)
        self.codes = torch.sign(labels @ projection + 0.5 * self.opts.mu * (self.hashes["image"] + self.hashes["text"]))

    def validate(self, epoch: int) -> loop.Validation | None:
        if (epoch + 1) % self.opts.valid_freq and epoch + 1 != self.opts.epochs:
            return None
        metrics = validate(self.gen, self.val, self.val_images, self.val_texts, self.opts, self.device)
        return code_validation.as_validation(metrics)

    def checkpoint(self, epoch: int, state: loop.LoopState) -> dict[str, Any]:
        return self.gen.state_dict()  # the raw GEN state dict, as main.py's save_model

    def after_save(self, epoch: int, state: loop.LoopState) -> None:
        from fico_registry.plugin_api.training import atomic_save

        atomic_save({
            "epoch": epoch + 1, "generator": self.gen.state_dict(), "discriminator": self.dis.state_dict(),
            "optimizer": self.optimizer.state_dict(), "dis_feature": self.dis_optimizers["feature"].state_dict(),
            "dis_hash": self.dis_optimizers["hash"].state_dict(), "B": self.codes.cpu(),
            "H_i": self.hashes["image"].cpu(), "H_t": self.hashes["text"].cpu(),
            "best": state.best, "best_epoch": state.best_epoch, "history": state.history,
            "options": json.loads(json.dumps(asdict(self.opts), default=str)), "config": self.cfg,
            "inputs": self.inputs.describe(),
        }, self.resume_path)  # fmt: skip

    def result(self) -> dict[str, Any]:
        return {
            "config": self.config_name if self.config_name is not None else self.cfg,
            "select_by": self.opts.select_by,
            "image_norm": self.image_norm,
            "inputs": self.inputs.describe(),
            "objective": "alpha * label-weighted triplet + (beta + 0.1) * quantisation to B "
            "+ gamma * adversarial (WGAN-GP discriminators)",
        }


train = loop.recipe_trainer(
    DadhRecipe, Options, "Train `dadh` on `train` (labels required), select on `val`; the raw GEN state dict in `out`."
)
