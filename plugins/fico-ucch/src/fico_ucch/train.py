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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fico_registry.errors import ConfigError
from fico_registry.plugin_api.checkpoints import strict_load_state_dict
from fico_registry.plugin_api.training import (
    code_validation,
    loop,
    resolve_model_config,  # noqa: F401 (used by bench_train_cost.py, tests)
)

from .model import UcchConfig, build_nets
from .nets import HashMLP
from .plugin import TRAIN_DEFAULTS

log = logging.getLogger(__name__)
MILESTONES = (30, 60, 90, 120)  # UCCH.py's MultiStepLR for --ls linear


@dataclass(frozen=True)
class Options(loop.RecipeOptions):
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

    DEFAULTS = TRAIN_DEFAULTS
    TITLE = "UCCH"
    POSITIVE = ("epochs", "batch_size", "eval_batch_size", "K")

    def check(self) -> None:
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: the losses contrast instances within a batch")
        if self.optimizer not in ("Adam", "SGD"):
            raise ConfigError(f"optimizer must be 'Adam' or 'SGD', got {self.optimizer!r}")
        if self.ls not in ("linear", "cos"):
            raise ConfigError(f"ls must be 'linear' (steps at 30/60/90/120) or 'cos', got {self.ls!r}")
        if self.select_by not in code_validation.SELECT_BY:
            raise ConfigError(f"select_by must be 'map' or 'rsum', got {self.select_by!r}")
        if not 0 <= self.momentum < 1 or not 0 <= self.alpha <= 1 or self.T <= 0:
            raise ConfigError("need 0 <= momentum < 1, 0 <= alpha <= 1 and T > 0")


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

    def scores(
        self, images: torch.Tensor, texts: torch.Tensor, index: torch.Tensor, warm: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1 + negatives) scores of the image and the text outputs; column 0 is the positive.
        Updates the memory entries of `index` afterwards (momentum 0 while not `warm`)."""
        batch = images.shape[0]
        momentum = self.momentum if warm else 0.0
        if momentum <= 0:  # in-batch: row i = [i, every j != i] of the batch's own codes
            own = torch.arange(batch, device=images.device)
            others = own.expand(batch, batch)[~torch.eye(batch, dtype=torch.bool, device=images.device)].view(
                batch, batch - 1
            )
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


def cross_modal_ranking_loss(
    images: torch.Tensor, texts: torch.Tensor, margin: float, shift: float, tau: float = 1.0
) -> torch.Tensor:
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
def validate(
    image_net: HashMLP,
    text_net: HashMLP,
    val: Any,
    image_features: np.ndarray,
    text_features: np.ndarray,
    opts: Options,
    device: str,
) -> dict[str, Any]:
    """Category mAP (whole ranking) and instance recalls of the sign codes on the validation split."""
    image_net.eval()
    text_net.eval()
    images = code_validation.sign_codes(image_net, image_features, opts.eval_batch_size, device)
    texts = code_validation.sign_codes(text_net, text_features, opts.eval_batch_size, device)
    return code_validation.validate_codes(images, texts, val, opts.select_by)


# -- training -----------------------------------------------------------------------------------------
def checkpoint_names(opts: Options, bits: int) -> tuple[str, str]:
    return f"{opts.arch}_{bits}_last_checkpoint.t7", f"{opts.arch}_{bits}_best_checkpoint.t7"


class UcchRecipe(loop.EpochRecipe):
    """UCCH.py's feature-mode training on the shared epoch loop: NCE against the code memory + ranking loss."""

    best_key = "best_score"
    initial_best = -math.inf
    first_epoch = 0  # UCCH.py counts epochs from 0
    per_rank_seed = False  # the memory draws must be the same on every rank

    def __init__(
        self, *, model: str, train: Any, val: Any, out: Path, opts: Options, device: str, progress: bool
    ) -> None:
        from fico_features.run_inputs import CaptionSampler, run_inputs

        from fico_registry.plugin_api.training import Checkpointer, distributed, grad_scaler, seed_everything

        super().__init__(model=model, out=out, opts=opts, device=device)
        self.score_format = f"val {opts.select_by} {{:.4f}}"
        cfg = self.cfg
        self.cfg, self.options = cfg, opts
        architecture = UcchConfig.from_dict(cfg).architecture
        # inputs: the evaluation pipelines, Doc2Vec fitted on the training captions, saved beside the checkpoints
        features = code_validation.feature_configs(opts.image_features, opts.text_features, self.config_name)
        self.inputs, (train_images, self.val_images, train_texts, self.val_texts) = run_inputs(
            train, val, self.out, *features, device=device, progress=progress, world=self.world
        )
        code_validation.check_widths(train_images, train_texts, architecture.image_dim, architecture.text_dim)
        self.sampler = CaptionSampler(train.caption_to_image, train.n_images, train_texts, opts.text_sample)
        self.n = n = train.n_images
        if n // opts.batch_size == 0:
            raise ConfigError(
                f"batch_size {opts.batch_size} exceeds the {n} training images (UCCH drops incomplete batches)"
            )
        code_validation.check_select_by(opts.select_by, val)
        self.val = val
        if n <= opts.K and self.main:
            log.warning(
                "ucch: K=%d memory negatives for only %d training instances: each draw holds the positive itself about "
                "%.1f times. UCCH's datasets have 10-100x more instances than K; consider --set K=%d",
                opts.K,
                n,
                opts.K / n,
                max(1, n // 4),
            )
        seed_everything(opts.seed)
        image_net, text_net = build_nets(architecture, norm=bool(cfg.get("norm", True)))
        self.memory = CodeMemory(n, architecture.bits, K=opts.K, T=opts.T, momentum=opts.momentum, device=device)
        self.nets = (image_net.to(device), text_net.to(device))
        self.parameters = [p for net in self.nets for p in net.parameters()]
        self.image_run, self.text_run = (distributed(net, device, self.world) for net in self.nets)
        if opts.optimizer == "Adam":
            self.optimizer = torch.optim.Adam(self.parameters, lr=opts.lr, weight_decay=opts.wd)
        else:
            self.optimizer = torch.optim.SGD(self.parameters, lr=opts.lr, momentum=0.9, weight_decay=opts.wd)
        self.scaler = grad_scaler(device, opts.precision)
        self.architecture = architecture
        last_name, best_name = checkpoint_names(opts, architecture.bits)
        self.checkpointer = Checkpointer(self.out, filename=last_name, best_filename=best_name)
        self.train_images = torch.from_numpy(train_images)

    def restore(self) -> loop.LoopState | None:
        """Continue a run: weights (strictly), optimizer, memory, epoch counter and best score so far."""
        state = self.checkpointer.latest()
        if state is None:
            return None
        path, memory = self.checkpointer.last_path, self.memory.memory
        extra = state.get("fico_resume")
        if not isinstance(extra, Mapping) or "memory" not in extra:
            raise ConfigError(
                f"{path} has no resume state (not written by `fico train ucch`): use another --out or --no-resume"
            )
        strict_load_state_dict(self.nets[0], state["image_model_state_dict"], what=f"{path} image_model_state_dict")
        strict_load_state_dict(self.nets[1], state["text_model_state_dict"], what=f"{path} text_model_state_dict")
        if tuple(extra["memory"].shape) != tuple(memory.shape):
            raise ConfigError(
                f"{path}: memory {tuple(extra['memory'].shape)} does not fit this run's {tuple(memory.shape)} "
                "(another training set?): use another --out or --no-resume"
            )
        memory.copy_(extra["memory"])
        self.optimizer.load_state_dict(state["optimizer_state_dict"])
        if extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        history = list(extra.get("history", []))
        return loop.LoopState(int(state["epoch"]) + 1, float(extra["best"]), extra.get("best_epoch"), 0, history)

    def learning_rate(self, epoch: int) -> float:
        return learning_rate(epoch, self.opts)

    def n_samples(self) -> int:
        return self.n

    def begin_epoch(self, epoch: int, order: np.ndarray) -> list[torch.Tensor]:
        opts = self.opts
        self.texts = torch.from_numpy(self.sampler.epoch(opts.seed, epoch))
        self.warm = epoch - opts.warmup_epoch >= 0
        for net in self.nets:
            net.train()
        order_t = torch.from_numpy(order)
        # global batches (drop_last=True); each rank takes its share in `step`
        return [order_t[s * opts.batch_size : (s + 1) * opts.batch_size] for s in range(self.n // opts.batch_size)]

    def step(self, index: torch.Tensor, epoch: int, step: int) -> float:
        from fico_registry.plugin_api.training import autocast, in_batch_order, shard

        opts, device, world = self.opts, self.device, self.world
        mine = shard(index, self.rank, world)  # this rank's share of the global batch
        with autocast(device, opts.precision):
            u = self.image_run(self.train_images[mine].to(device)).float()
            v = self.text_run(self.texts[mine].to(device)).float()
        # the losses and the memory see the whole batch, in its own order, on every rank
        u, v = in_batch_order(u, world), in_batch_order(v, world)
        out_u, out_v = self.memory.scores(u, v, index.to(device), self.warm)
        contrastive = nce_softmax_loss(out_u) + nce_softmax_loss(out_v)
        ranking = cross_modal_ranking_loss(u, v, opts.margin, opts.shift)
        loss = opts.alpha * contrastive + (1 - opts.alpha) * ranking
        loop.optimizer_step(loss, self.optimizer, self.parameters, scaler=self.scaler, grad_clip=opts.grad_clip)
        return float(loss.detach())

    def validate(self, epoch: int) -> loop.Validation:
        metrics = validate(*self.nets, self.val, self.val_images, self.val_texts, self.opts, self.device)
        return code_validation.as_validation(metrics)

    def checkpoint(self, epoch: int, state: loop.LoopState) -> dict[str, Any]:
        metrics = state.history[-1]
        return {
            # UCCH.py's keys (Avg / Img2Txt / Txt2Img: validation mAP of this epoch's codes)
            "image_model_state_dict": self.nets[0].state_dict(),
            "text_model_state_dict": self.nets[1].state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "Avg": metrics.get("map_avg", metrics["score"]),
            "Img2Txt": metrics.get("map_i2t"),
            "Txt2Img": metrics.get("map_t2i"),
            "epoch": epoch,
            # resume-only (UCCH.py ignores it): the code memory, scaler, selection state, run settings
            "fico_resume": {
                "memory": self.memory.memory.cpu(),
                "scaler": self.scaler.state_dict(),
                "best": state.best,
                "best_epoch": state.best_epoch,
                "history": state.history,
                "options": _plain(asdict(self.opts)),
                "config": self.cfg,
                "inputs": self.inputs.describe(),
            },
        }

    def result(self) -> dict[str, Any]:
        return {
            "config": self.config_name if self.config_name is not None else self.cfg,
            "select_by": self.opts.select_by,
            "inputs": self.inputs.describe(),
            "objective": "alpha * NCE contrastive hashing vs momentum code memory + (1 - alpha) * cross-modal ranking",
        }


train = loop.recipe_trainer(
    UcchRecipe, Options, "Train `ucch` on `train`, select on `val`; UCCH.py's `.t7` checkpoints and inputs.json in out."
)


def _plain(options: Mapping[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(dict(options), default=str))
