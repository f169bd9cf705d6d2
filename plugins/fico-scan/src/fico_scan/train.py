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
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fico_registry.errors import CheckpointError, ConfigError, MissingInputError
from fico_registry.plugin_api.captions import (
    CaptionTokenizer,
    Vocabulary,
    build_vocab,
    load_vocab_json,
    save_vocab_json,
)

from .options import SCAN_OPT_DEFAULTS, merge_options
from .plugin import TRAIN_DEFAULTS


@dataclass(frozen=True)
class TrainOptions:
    epochs: int
    batch_size: int
    learning_rate: float
    lr_update: int
    grad_clip: float
    margin: float
    max_violation: bool
    warmup_epochs: int
    vocab_threshold: int
    data_name: str | None
    val_batch_size: int
    config: Any = "default"
    seed: int = 0
    resume: bool = True
    precision: str = "fp32"

    @classmethod
    def from_dict(cls, options: Mapping[str, Any], defaults: Mapping[str, Any], *, model: str) -> TrainOptions:
        merged = {**defaults, **options}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ConfigError(f"unknown {model} training options {unknown}; known: {sorted(known)}")
        opts = cls(**merged)
        for name in ("epochs", "batch_size", "lr_update", "vocab_threshold", "val_batch_size"):
            value = getattr(opts, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{model} training option {name} must be a positive integer, got {value!r}")
        if opts.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: the ranking loss needs in-batch negatives")
        if not isinstance(opts.warmup_epochs, int) or isinstance(opts.warmup_epochs, bool) or opts.warmup_epochs < 0:
            raise ConfigError(f"{model} training option warmup_epochs must be an integer >= 0, got {opts.warmup_epochs!r}")
        for name in ("learning_rate", "margin", "grad_clip"):
            value = getattr(opts, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{model} training option {name} must be a non-negative number, got {value!r}")
        if opts.data_name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", str(opts.data_name)):
            raise ConfigError(f"data_name must be a plain file-name stem (letters, digits, _ . -), got {opts.data_name!r}")
        return opts


# -- the loss (model.py ContrastiveLoss) ------------------------------------------------------------
def contrastive_loss(scores: torch.Tensor, margin: float, max_violation: bool) -> torch.Tensor:
    """scores[i, j] = image i with caption j, pairs on the diagonal: the original's summed hinge loss."""
    diagonal = scores.diag().view(-1, 1)
    cost_caption = (margin + scores - diagonal).clamp(min=0)  # image i against other captions j
    cost_image = (margin + scores - diagonal.T).clamp(min=0)  # caption j against other images i
    eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    cost_caption = cost_caption.masked_fill(eye, 0)
    cost_image = cost_image.masked_fill(eye, 0)
    if max_violation:
        return cost_caption.max(dim=1).values.sum() + cost_image.max(dim=0).values.sum()
    return cost_caption.sum() + cost_image.sum()


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


def resolve_model_config(model: str, config: Any) -> tuple[dict[str, Any], str | None]:
    """The model card's config (a name or a dict over "default") as a plain dict."""
    from fico_registry.plugin_api.registry import get_model_spec

    spec = get_model_spec(model)
    if isinstance(config, str):
        if config not in spec.configs:
            raise ConfigError(f"{spec.name} has no config {config!r}; it has: {', '.join(spec.configs)}")
        return json.loads(json.dumps(spec.configs[config])), config
    if isinstance(config, Mapping):
        return json.loads(json.dumps({**spec.configs["default"], **config})), None
    raise ConfigError(f"config must be a config name or a dict, got {type(config).__name__}")


def default_data_name(corpus: Any) -> str:
    """opt.data_name as the originals name their datasets (f30k_precomp, coco_precomp), else `<name>_precomp`."""
    name = str(getattr(corpus, "name", "") or "corpus").lower()
    if "flickr30k" in name or "f30k" in name:
        return "f30k_precomp"
    if "coco" in name:
        return "coco_precomp"
    return re.sub(r"[^a-z0-9_.-]+", "_", name) + "_precomp"


def opt_namespace(recipe: Recipe, options: Mapping[str, Any], opts: TrainOptions, train: Any, out: Path, vocab: Vocabulary) -> argparse.Namespace:
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
class RegionSource:
    """Region features of a corpus: in memory when small enough, else read per batch from the memmap."""

    IN_MEMORY_BYTES = 4 << 30

    def __init__(self, corpus: Any, img_dim: int, *, model: str) -> None:
        if "regions" not in corpus.features:
            raise MissingInputError(
                f"{corpus!r} has no 'regions' features: {model} trains on bottom-up region features (n, 36, {img_dim}); "
                "attach them (e.g. SCAN's {split}_ims.npy, which the flickr30k / coco loaders find in --root)"
            )
        self.ref = corpus.features["regions"]
        shape = self.ref.shape
        if len(shape) != 3 or shape[-1] != img_dim or shape[0] != corpus.n_images:
            raise MissingInputError(f"region features of {corpus!r} have shape {shape}; expected ({corpus.n_images}, regions, {img_dim})")
        nbytes = int(np.prod(shape)) * 4
        self.array = self.ref.rows(slice(None)).astype(np.float32, copy=False) if nbytes <= self.IN_MEMORY_BYTES else None

    def __call__(self, items: np.ndarray) -> torch.Tensor:
        rows = self.array[items] if self.array is not None else self.ref.rows(items)
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))


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


def make_vocabulary(captions: Sequence[str], tokenizer: CaptionTokenizer, threshold: int, path: Path, *, write: bool) -> Vocabulary:
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
def gather_batch(regions: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global batch from every rank (gradients flow to the local part); words padded to one length."""
    import torch.distributed as dist

    from fico_registry.training.common import all_gather_with_grad

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
def validate(model: Trainable, recipe: Recipe, val: Any, regions: RegionSource, batch: int) -> tuple[float, dict[str, Any]]:
    """rsum (percent, 0..600) and the instance metrics on the validation split, through the same
    encode / score path as evaluation."""
    from fico_registry.evaluator.evaluate import evaluate_similarity
    from fico_registry.training.common import validation_rsum

    encoder = recipe.evaluator(model)
    images = [encoder.encode_images(regions(np.arange(s, min(s + batch, val.n_images)))) for s in range(0, val.n_images, batch)]
    captions = list(val.captions)
    texts = [encoder.encode_texts(captions[s : s + batch]) for s in range(0, len(captions), batch)]
    cat = lambda parts: {k: torch.cat([p[k] for p in parts]) for k in parts[0]}  # noqa: E731
    scores = encoder.score(cat(images), cat(texts)).float().cpu().numpy()
    report = evaluate_similarity(scores, val.caption_to_image)
    return validation_rsum(report), report.instance


# -- the loop -------------------------------------------------------------------------------------------
def run(recipe: Recipe, *, model: str, train: Any, val: Any, out: Path, options: Mapping[str, Any], defaults: Mapping[str, Any], device: str, progress: bool) -> dict[str, Any]:
    from fico_registry.evaluator.sharded import is_main_process, rank, world_size
    from fico_registry.training import _dist
    from fico_registry.training.common import Checkpointer, TrainingProgress, autocast, seed_everything, shard

    opts = TrainOptions.from_dict(options, defaults, model=model)
    out = Path(out)
    main = is_main_process()
    world, me = world_size(), rank()
    if opts.batch_size % world:
        raise ConfigError(f"batch_size {opts.batch_size} must split evenly over {world} ranks")
    cfg, config_name = resolve_model_config(model, opts.config)
    cfg["vocab_words"] = None  # the vocabulary comes from the training captions
    cfg["vocab_path"] = None
    data_name = opts.data_name or default_data_name(train)
    cfg["data_name"] = data_name
    options_used = merge_options(cfg, None, recipe.opt_defaults, where=f"{model} training config")
    if main:
        out.mkdir(parents=True, exist_ok=True)
    if world > 1:
        _dist.barrier()

    tokenizer = CaptionTokenizer(options_used["tokenizer"], options_used["lowercase"])
    vocab_path = out / f"{data_name}_vocab.json"
    captions = list(train.captions)
    vocab = make_vocabulary(captions, tokenizer, opts.vocab_threshold, vocab_path, write=main)
    if world > 1:
        _dist.barrier()
        vocab = load_vocab_json(vocab_path)

    seed_everything(opts.seed)
    net = recipe.build(options_used, vocab, device)
    modules = recipe.modules(net)
    for module in modules:
        module.to(device)
    params = recipe.parameters(net)
    optimizer = torch.optim.Adam(params, lr=opts.learning_rate)
    namespace = opt_namespace(recipe, options_used, opts, train, out, vocab)

    checkpointer = Checkpointer(out)
    start_epoch, best_rsum, best_epoch, iters, history = 0, 0.0, None, 0, []
    state = checkpointer.latest() if opts.resume else None
    if state is not None:
        start_epoch, best_rsum, iters, history, best_epoch = restore(recipe, net, optimizer, state, namespace, checkpointer.last_path)

    train_regions = RegionSource(train, int(options_used["img_dim"]), model=model)
    val_regions = RegionSource(val, int(options_used["img_dim"]), model=model)
    train_ids = CaptionIds(captions, vocab, tokenizer)
    max_words = int(options_used["max_words"])
    longest = max(len(s) for s in train_ids.ids)
    if longest > max_words:
        raise ConfigError(
            f"a training caption has {longest} tokens with <start>/<end>, more than the config's max_words={max_words} "
            f"that evaluation pads to: train with --set config.max_words={longest}"
        )

    from fico_registry.training.sharding import distributed

    img_run, txt_run = distributed(net.img_enc, device, world), distributed(net.txt_enc, device, world)

    c2i = np.asarray(train.caption_to_image)
    local_batch = opts.batch_size // world
    bar = TrainingProgress(progress, model)
    if start_epoch >= opts.epochs and main:
        bar.log(f"{model}: {out} already holds {start_epoch} epochs (asked for {opts.epochs}); nothing to train")
    epochs_run = 0
    for epoch in range(start_epoch, opts.epochs):
        started = time.perf_counter()
        lr = learning_rate(opts, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = np.random.default_rng([opts.seed, epoch]).permutation(len(c2i))  # the same on every rank
        seed_everything(opts.seed * 100_003 + epoch * 1_009 + me)
        mine = shard(order, me, world)
        steps = math.ceil(len(mine) / local_batch)
        # warm-up (not in the original; 0 by default): summed violations before the hardest negatives
        max_violation = opts.max_violation and epoch >= opts.warmup_epochs
        for module in modules:
            module.train()
        total = 0.0
        with bar.epoch(epoch, opts.epochs, steps) as advance:
            for step in range(steps):
                # rank r's step-k share is its part of global batch k; the last (short) batch too:
                # shard() gives every rank the same number of captions, so the shares stay equal
                caps = mine[step * local_batch : (step + 1) * local_batch]
                ids, lengths = train_ids(caps)
                with autocast(device, opts.precision):
                    regions = img_run(train_regions(c2i[caps]).to(device))
                    words = txt_run(ids.to(device), lengths.to(device))
                regions, words, lengths = gather_batch(regions.float(), words.float(), lengths.to(device))
                mask = torch.arange(words.shape[1], device=words.device)[None, :] < lengths[:, None]
                scores = net.pair_scores(regions, words, mask)
                loss = contrastive_loss(scores, opts.margin, max_violation)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if opts.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
                optimizer.step()
                iters += 1
                value = float(loss.detach())
                total += value
                advance(1, loss=value, lr=lr)
        for module in modules:
            module.eval()
        rsum, metrics = validate(net, recipe, val, val_regions, opts.val_batch_size)
        is_best = bool(_dist.broadcast_object(rsum > best_rsum))
        if is_best:
            best_rsum, best_epoch = rsum, epoch + 1
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch + 1, "loss": total / max(steps, 1), "val_rsum": rsum, "val": metrics, "lr": lr, "seconds": round(seconds, 2)})
        epochs_run += 1
        if main:
            checkpoint: dict[str, Any] = {
                "epoch": recipe.epoch_saved(epoch),
                "model": recipe.original_state(net),
                "best_rsum": best_rsum,
                "opt": namespace,
            }
            if recipe.saves_eiters:
                checkpoint["Eiters"] = iters
            # resume-only entries; the original loaders never read them
            checkpoint["fico_resume"] = {"optimizer": optimizer.state_dict(), "history": history, "best_epoch": best_epoch, "Eiters": iters}
            checkpointer.save(epoch, checkpoint, is_best=is_best)
            bar.log(
                f"{model} epoch {epoch + 1}/{opts.epochs}: loss {history[-1]['loss']:.4f}  val rsum {rsum:.1f}"
                f"{'  (best)' if is_best else ''}  [{seconds:.1f}s]"
            )
        if world > 1:
            _dist.barrier()
    best = checkpointer.best_path if checkpointer.best_path.exists() else checkpointer.last_path
    return {
        "checkpoint": str(best),
        "last_checkpoint": str(checkpointer.last_path),
        "config": config_name if config_name is not None else cfg,
        "best_epoch": best_epoch,
        "best_rsum": best_rsum,
        "epochs_run": epochs_run,
        "history": history,
        "vocab_file": str(vocab_path),
        "vocab_size": len(vocab),
        "objective": f"{recipe.title} triplet ranking loss (margin {opts.margin}, max_violation {opts.max_violation}, "
        f"warmup_epochs {opts.warmup_epochs})",
    }


ARCHITECTURE_KEYS = ("img_dim", "embed_size", "word_dim", "num_layers", "bi_gru", "precomp_enc_type", "vocab_size", "data_name")


def restore(recipe: Recipe, net: Trainable, optimizer: torch.optim.Optimizer, state: Mapping[str, Any], namespace: argparse.Namespace, path: Path) -> tuple[int, float, int, list, int | None]:
    """Continue a run: weights (strictly, through the model's own original-layout loader), optimizer, counters."""
    opt = state.get("opt")
    saved = dict(vars(opt)) if isinstance(opt, argparse.Namespace) else {}
    wanted = vars(namespace)
    for key in (*ARCHITECTURE_KEYS, *recipe.opt_defaults):
        if key in saved and saved[key] != wanted.get(key):
            raise ConfigError(
                f"{path} was trained with {key}={saved[key]!r}, this run asks for {wanted.get(key)!r}: use another --out or --no-resume"
            )
    try:
        net.load_original(state["model"], where=str(path))
    except (CheckpointError, KeyError) as exc:
        raise ConfigError(f"cannot resume from {path}: {exc}; use another --out or --no-resume") from None
    extra = state.get("fico_resume") or {}
    if "optimizer" in extra:
        optimizer.load_state_dict(extra["optimizer"])
    iters = int(extra.get("Eiters", state.get("Eiters", 0)))
    return recipe.epoch_resumed(int(state["epoch"])), float(state.get("best_rsum", 0.0)), iters, list(extra.get("history", [])), extra.get("best_epoch")


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


def train(*, model: str, train: Any, val: Any, out: Path, options: Mapping[str, Any], device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Train SCAN on `train`, select on `val`; checkpoints in SCAN's `.pth.tar` layout in `out`."""
    return run(SCAN_RECIPE, model=model, train=train, val=val, out=Path(out), options=options, defaults=TRAIN_DEFAULTS, device=device, progress=progress)
