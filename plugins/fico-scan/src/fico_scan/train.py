"""Training SCAN the way the original `train.py` does (IMRAM's recipe reuses this loop).

Per epoch: the learning rate is `learning_rate * 0.1 ** (epoch // lr_update)`; the training
captions are shuffled and taken `batch_size` at a time, each with its image; the loss is the
original ContrastiveLoss on the batch's cross-attention scores (image i with caption j):
hinge with margin 0.2 against the hardest negative caption of each image and the hardest
negative image of each caption (max_violation), only the diagonal excluded, summed; Adam;
gradient norm clipped at 2. The vocabulary is built from the training captions (vocab.py:
words seen >= 4 times) and written as `{data_name}_vocab.json` beside the checkpoints.
After each epoch the model is evaluated on the VALIDATION split (rsum = R@1+5+10 both ways)
and checkpointed atomically in the original `.pth.tar` layout (`model_best.pth.tar` is the
best by validation rsum; `checkpoint.pth.tar` the last, which resuming continues from).

Not in the original, off by default: `warmup_epochs` (summed violations instead of the hardest
negative for the first epochs). From random init the hardest-negative loss can collapse to equal
scores (loss = 2 x margin per sample), as seen on the synthetic corpus; a short warm-up avoids it.

Deviations, on purpose: the validation split of the corpus (the original used `dev`, the same
thing under another name), one checkpoint file per role instead of `checkpoint_{epoch}.pth.tar`,
and re-seeding each epoch so that a resumed run equals an uninterrupted one. Under torchrun
each rank encodes its share of the batch and the loss is computed over the gathered global
batch (as the original's single process saw it).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.captions import (
    CaptionTokenizer,
    Vocabulary,
    build_vocab,
    load_vocab_json,
    save_vocab_json,
)
from fico_registry.plugin_api.region_features import RegionFeatures
from fico_registry.plugin_api.training import (
    autocast,
    loop,
    resolve_model_config,  # noqa: F401 (used by bench_train_cost.py, tests)
    vse_hinge_loss,
)

from .options import SCAN_OPT_DEFAULTS, merge_options
from .plugin import TRAIN_DEFAULTS


@dataclass(frozen=True)
class TrainOptions(loop.RecipeOptions):
    margin: float
    max_violation: bool
    warmup_epochs: int
    learning_rate: float
    lr_update: int
    grad_clip: float
    vocab_threshold: int
    data_name: str | None
    val_batch_size: int

    POSITIVE = ("epochs", "batch_size", "lr_update", "vocab_threshold", "val_batch_size")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any], defaults: Mapping[str, Any] | None = None, *, model: str = "scan",
                  title: str | None = None) -> TrainOptions:  # fmt: skip
        return super().from_dict(options, defaults, title=title or model)

    def check(self) -> None:
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: the ranking loss needs in-batch negatives")
        if not isinstance(self.warmup_epochs, int) or isinstance(self.warmup_epochs, bool) or self.warmup_epochs < 0:
            raise ConfigError(f"training option warmup_epochs must be an integer >= 0, got {self.warmup_epochs!r}")
        for name in ("learning_rate", "margin", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"training option {name} must be a non-negative number, got {value!r}")
        if self.data_name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", str(self.data_name)):
            raise ConfigError(
                f"data_name must be a plain file-name stem (letters, digits, _ . -), got {self.data_name!r}"
            )


# the loss is model.py's ContrastiveLoss on the cross-attention scores: the shared VSE++ hinge
contrastive_loss = vse_hinge_loss


def learning_rate(opts: TrainOptions, epoch: int) -> float:
    """adjust_learning_rate: decayed by 10 every lr_update epochs."""
    return opts.learning_rate * (0.1 ** (epoch // opts.lr_update))


# -- what a recipe needs from a model ----------------------------------------------------------------
class Trainable(Protocol):
    """A SCAN-family model under training (fico_scan.model.ScanScorer, fico_imram.model.ImramEncoder)."""

    img_enc: nn.Module
    txt_enc: nn.Module
    options: dict[str, Any]

    def pair_scores(self, regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor: ...

    def load_original(self, state: Any, *, where: str) -> None: ...


@dataclass(frozen=True)
class Recipe:
    """The model-specific parts of the loop."""

    title: str  # "SCAN" / "IMRAM"
    opt_defaults: Mapping[str, Any]  # the architecture keys of the original opt
    build: Callable[[dict[str, Any], Vocabulary, str], Trainable]
    modules: Callable[[Trainable], list[nn.Module]]  # every module whose parameters Adam updates
    parameters: Callable[[Trainable], list[nn.Parameter]]  # in the original's order
    original_state: Callable[[Trainable], Any]  # checkpoint['model'] in the original layout
    evaluator: Callable[[Trainable], Any]  # the registry-facing encoder (encode_images / encode_texts / score)
    extra_opt: Mapping[str, Any]  # original argparse options that shape nothing here (IMRAM: gpuid, pos_emb)
    epoch_saved: Callable[[int], int]  # what checkpoint['epoch'] holds after 0-based epoch e
    epoch_resumed: Callable[[int], int]  # the 0-based epoch to start from, given checkpoint['epoch']
    saves_eiters: bool


def default_data_name(corpus: Any) -> str:
    """opt.data_name as the originals name their datasets (f30k_precomp, coco_precomp), else `<name>_precomp`."""
    name = str(getattr(corpus, "name", "") or "corpus").lower()
    if "flickr30k" in name or "f30k" in name:
        return "f30k_precomp"
    if "coco" in name:
        return "coco_precomp"
    return re.sub(r"[^a-z0-9_.-]+", "_", name) + "_precomp"


def opt_namespace(
    recipe: Recipe, options: Mapping[str, Any], opts: TrainOptions, train: Any, out: Path, vocab: Vocabulary
) -> argparse.Namespace:
    """Every option the original training script pickles as `opt`, under its argparse names."""
    arch = {key: options[key] for key in recipe.opt_defaults}
    return argparse.Namespace(
        data_path=str(getattr(train, "root", "") or ""),
        vocab_path=str(out),
        margin=float(opts.margin),
        num_epochs=int(opts.epochs),
        batch_size=int(opts.batch_size),
        grad_clip=float(opts.grad_clip),
        learning_rate=float(opts.learning_rate),
        lr_update=int(opts.lr_update),
        workers=0,
        log_step=10,
        val_step=500,
        logger_name=str(out),
        model_name=str(out),
        resume="",
        max_violation=bool(opts.max_violation),
        **arch,
        **dict(recipe.extra_opt),
        vocab_size=len(vocab),
    )


# -- data -----------------------------------------------------------------------------------------
class CaptionIds:
    """Word ids of every caption (<start> ... <end>), padded per batch with <pad> = 0 as collate_fn."""

    def __init__(self, captions: Sequence[str], vocab: Vocabulary, tokenizer: CaptionTokenizer) -> None:
        self.ids = [vocab.encode(tokenizer(text)) for text in captions]

    def __call__(self, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [self.ids[int(i)] for i in items]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        batch = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
        for row, seq in enumerate(seqs):
            batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return batch, lengths


def make_vocabulary(
    captions: Sequence[str], tokenizer: CaptionTokenizer, threshold: int, path: Path, *, write: bool
) -> Vocabulary:
    """Build the vocabulary; a run folder that already has one must have this very one (resuming)."""
    vocab = build_vocab(captions, tokenizer, threshold=threshold, source=f"training captions (threshold {threshold})")
    if path.is_file():
        existing = load_vocab_json(path)
        if existing.word2idx != vocab.word2idx:
            raise ConfigError(
                f"{path} holds a different vocabulary than the training captions give ({len(existing)} vs {len(vocab)} "
                "words): this run folder belongs to another dataset or tokenizer; use another --out"
            )
        return existing
    if write:
        save_vocab_json(vocab, path)
    return vocab


# -- torch.distributed ------------------------------------------------------------------------------
def gather_batch(
    regions: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global batch from every rank (gradients flow to the local part); words padded to one length."""
    import torch.distributed as dist

    from fico_registry.plugin_api.training import all_gather_with_grad

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return regions, words, lengths
    longest = torch.tensor([words.shape[1]], device=words.device)
    dist.all_reduce(longest, op=dist.ReduceOp.MAX)
    words = F.pad(words, (0, 0, 0, int(longest) - words.shape[1]))
    parts = [torch.empty_like(lengths) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, lengths.contiguous())
    return all_gather_with_grad(regions), all_gather_with_grad(words), torch.cat(parts)


# -- validation -------------------------------------------------------------------------------------
@torch.no_grad()
def validate(
    model: Trainable,
    recipe: Recipe,
    val: Any,
    regions: RegionFeatures,
    batch: int,
) -> tuple[float, dict[str, Any]]:
    """rsum (percent, 0..600) and the instance metrics on the validation split, through the same
    encode / score path as evaluation."""
    from fico_registry import evaluate_similarity
    from fico_registry.plugin_api.training import validation_rsum

    encoder = recipe.evaluator(model)
    images = [
        encoder.encode_images(regions(np.arange(s, min(s + batch, val.n_images))))
        for s in range(0, val.n_images, batch)
    ]
    captions = list(val.captions)
    texts = [encoder.encode_texts(captions[s : s + batch]) for s in range(0, len(captions), batch)]
    cat = lambda parts: {k: torch.cat([p[k] for p in parts]) for k in parts[0]}  # noqa: E731
    scores = encoder.score(cat(images), cat(texts)).float().cpu().numpy()
    report = evaluate_similarity(scores, val.caption_to_image)
    return validation_rsum(report), report.instance


# -- the loop -------------------------------------------------------------------------------------------
class CrossAttentionRecipe(loop.EpochRecipe):
    """SCAN / IMRAM on the shared epoch loop: encoders per rank, the hinge loss on the gathered batch's scores."""

    def __init__(
        self,
        recipe: Recipe,
        *,
        model: str,
        train: Any,
        val: Any,
        out: Path,
        opts: TrainOptions,
        device: str,
    ) -> None:
        from fico_registry.plugin_api.training import Checkpointer, barrier, distributed, grad_scaler, seed_everything

        super().__init__(model=model, out=out, opts=opts, device=device)
        self.recipe, self.val = recipe, val
        cfg = self.cfg
        cfg["vocab_words"] = None  # the vocabulary comes from the training captions
        cfg["vocab_path"] = None
        self.data_name = opts.data_name or default_data_name(train)
        cfg["data_name"] = self.data_name
        self.cfg = cfg
        options_used = merge_options(cfg, None, recipe.opt_defaults, where=f"{model} training config")
        if self.world > 1:
            barrier()
        tokenizer = CaptionTokenizer(options_used["tokenizer"], options_used["lowercase"])
        self.vocab_path = self.out / f"{self.data_name}_vocab.json"
        captions = list(train.captions)
        vocab = make_vocabulary(captions, tokenizer, opts.vocab_threshold, self.vocab_path, write=self.main)
        if self.world > 1:
            barrier()
            vocab = load_vocab_json(self.vocab_path)
        self.vocab = vocab

        seed_everything(opts.seed)
        self.net = recipe.build(options_used, vocab, device)
        self.modules = recipe.modules(self.net)
        for module in self.modules:
            module.to(device)
        self.params = recipe.parameters(self.net)
        self.optimizer = torch.optim.Adam(self.params, lr=opts.learning_rate)
        self.scaler = grad_scaler(device, opts.precision)
        self.namespace = opt_namespace(recipe, options_used, opts, train, self.out, vocab)
        self.checkpointer = Checkpointer(self.out)

        img_dim = int(options_used["img_dim"])
        self.train_regions = RegionFeatures(train, img_dim, model=model)
        self.val_regions = RegionFeatures(val, img_dim, model=model)
        self.train_ids = CaptionIds(captions, vocab, tokenizer)
        max_words = int(options_used["max_words"])
        longest = max(len(s) for s in self.train_ids.ids)
        if longest > max_words:
            raise ConfigError(
                f"a training caption has {longest} tokens with <start>/<end>, more than the config's "
                f"max_words={max_words} that evaluation pads to: train with --set config.max_words={longest}"
            )
        self.img_run = distributed(self.net.img_enc, device, self.world)
        self.txt_run = distributed(self.net.txt_enc, device, self.world)
        self.c2i = np.asarray(train.caption_to_image)

    def restore(self) -> loop.LoopState | None:
        state = self.checkpointer.latest()
        if state is None:
            return None
        return restore(
            self.recipe,
            self.net,
            self.optimizer,
            state,
            self.namespace,
            self.checkpointer.last_path,
            self.scaler,
        )

    def learning_rate(self, epoch: int) -> float:
        return learning_rate(self.opts, epoch)

    def n_samples(self) -> int:
        return len(self.c2i)

    def begin_epoch(self, epoch: int, order: np.ndarray) -> list[np.ndarray]:
        # warm-up (not in the original; 0 by default): summed violations before the hardest negatives
        self.max_violation = self.opts.max_violation and epoch >= self.opts.warmup_epochs
        for module in self.modules:
            module.train()
        return loop.rank_batches(order, self.opts.batch_size, self.rank, self.world)

    def step(self, caps: np.ndarray, epoch: int, step: int) -> float:
        device = self.device
        ids, lengths = self.train_ids(caps)
        with autocast(device, self.opts.precision):
            regions = self.img_run(self.train_regions(self.c2i[caps]).to(device))
            words = self.txt_run(ids.to(device), lengths.to(device))
        regions, words, lengths = gather_batch(regions.float(), words.float(), lengths.to(device))
        mask = torch.arange(words.shape[1], device=words.device)[None, :] < lengths[:, None]
        loss = contrastive_loss(self.net.pair_scores(regions, words, mask), self.opts.margin, self.max_violation)
        loop.optimizer_step(loss, self.optimizer, self.params, scaler=self.scaler, grad_clip=self.opts.grad_clip)
        return float(loss.detach())

    def validate(self, epoch: int) -> loop.Validation:
        for module in self.modules:
            module.eval()
        rsum, metrics = validate(self.net, self.recipe, self.val, self.val_regions, self.opts.val_batch_size)
        return loop.Validation(rsum, {"val_rsum": rsum, "val": metrics})

    def checkpoint(self, epoch: int, state: loop.LoopState) -> dict[str, Any]:
        recipe = self.recipe
        model = recipe.original_state(self.net)
        return self.vse_checkpoint(recipe.epoch_saved(epoch), model, state, self.namespace, eiters=recipe.saves_eiters)

    def result(self) -> dict[str, Any]:
        opts = self.opts
        return {
            "config": self.config_name if self.config_name is not None else self.cfg,
            "vocab_file": str(self.vocab_path),
            "vocab_size": len(self.vocab),
            "objective": f"{self.recipe.title} triplet ranking loss (margin {opts.margin}, "
            f"max_violation {opts.max_violation}, warmup_epochs {opts.warmup_epochs})",
        }


def run(
    recipe: Recipe,
    *,
    model: str,
    train: Any,
    val: Any,
    out: Path,
    options: Mapping[str, Any],
    defaults: Mapping[str, Any],
    device: str,
    progress: bool,
) -> dict[str, Any]:
    opts = TrainOptions.from_dict(options, defaults, model=model)
    trainer = CrossAttentionRecipe(recipe, model=model, train=train, val=val, out=Path(out), opts=opts, device=device)
    return loop.run_epochs(trainer, progress=progress)


ARCHITECTURE_KEYS = (
    "img_dim",
    "embed_size",
    "word_dim",
    "num_layers",
    "bi_gru",
    "precomp_enc_type",
    "vocab_size",
    "data_name",
)


def restore(
    recipe: Recipe,
    net: Trainable,
    optimizer: torch.optim.Optimizer,
    state: Mapping[str, Any],
    namespace: argparse.Namespace,
    path: Path,
    scaler: Any = None,
) -> loop.LoopState:
    """Continue a run: weights (strictly, through the model's own original-layout loader), optimizer, counters."""
    opt = state.get("opt")
    saved = dict(vars(opt)) if isinstance(opt, argparse.Namespace) else {}
    wanted = vars(namespace)
    for key in (*ARCHITECTURE_KEYS, *recipe.opt_defaults):
        if key in saved and saved[key] != wanted.get(key):
            raise ConfigError(
                f"{path} was trained with {key}={saved[key]!r}, this run asks for {wanted.get(key)!r}: use another "
                "--out or --no-resume"
            )
    try:
        net.load_original(state["model"], where=str(path))
    except (CheckpointError, KeyError) as exc:
        raise ConfigError(f"cannot resume from {path}: {exc}; use another --out or --no-resume") from None
    extra = state.get("fico_resume") or {}
    loop.restore_optimizers(extra, optimizer, scaler)
    iters = int(extra.get("Eiters", state.get("Eiters", 0)))
    start, best = recipe.epoch_resumed(int(state["epoch"])), float(state.get("best_rsum", 0.0))
    return loop.LoopState(start, best, extra.get("best_epoch"), iters, list(extra.get("history", [])))


# -- SCAN ---------------------------------------------------------------------------------------------
def _scan_build(options: dict[str, Any], vocab: Vocabulary, device: str) -> Trainable:
    from .model import ScanScorer

    scorer = ScanScorer(options, vocab, device)
    scorer.device = torch.device(device)
    return scorer


def _scan_evaluator(scorer: Any) -> Any:
    from .model import ScanEncoder

    return ScanEncoder(scorer)


SCAN_RECIPE = Recipe(
    title="SCAN",
    opt_defaults=SCAN_OPT_DEFAULTS,
    build=_scan_build,
    modules=lambda s: [s.img_enc, s.txt_enc],
    # model.py: params = txt_enc.parameters() + img_enc.fc.parameters()
    parameters=lambda s: [*s.txt_enc.parameters(), *s.img_enc.parameters()],
    original_state=lambda s: [s.img_enc.state_dict(), s.txt_enc.state_dict()],
    evaluator=_scan_evaluator,
    extra_opt={},
    epoch_saved=lambda epoch: epoch,  # train.py saves 'epoch': epoch and resumes at epoch + 1
    epoch_resumed=lambda saved: saved + 1,
    saves_eiters=True,
)


def recipe_train(recipe: Recipe, defaults: Mapping[str, Any], name: str) -> Callable[..., dict[str, Any]]:
    """The `train` function a TrainerSpec names, for one cross-attention recipe (SCAN, IMRAM)."""

    def train(
        *,
        model: str,
        train: Any,
        val: Any,
        out: Path,
        options: Mapping[str, Any],
        device: str = "cpu",
        progress: bool = False,
    ) -> dict[str, Any]:
        return run(
            recipe, model=model, train=train, val=val, out=Path(out), options=options, defaults=defaults,
            device=device, progress=progress,
        )  # fmt: skip

    train.__doc__ = f"Train {name} on `train`, select on `val`; checkpoints in {name}'s `.pth.tar` layout in `out`."
    return train


train = recipe_train(SCAN_RECIPE, TRAIN_DEFAULTS, "SCAN")
