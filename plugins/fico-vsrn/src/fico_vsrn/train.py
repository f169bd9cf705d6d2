"""Training VSRN's retrieval encoders the way the original `train.py` does (issue 11).

Per batch of (caption, its image) pairs drawn from a shuffle of all training captions:
  loss = VSE++ hinge triplet loss on the inner products of the embeddings, margin 0.2,
         hardest negative per query (`--max_violation`, as the README's commands),
Adam, lr 2e-4 divided by 10 every `lr_update` epochs (15 by default; the README trains
Flickr30K with 10), gradient norm clipped at 2, batch 128, 30 epochs, encoders in train mode
(the BatchNorms of the Rs_GCN blocks and of `bn` use batch statistics).

Deviations, on purpose:
- The caption-generation loss (S2VTAttModel decoding the reasoned region features, added to
  the retrieval loss in the original) is omitted: that branch is not part of the retrieval
  model, is not saved in the checkpoints, and needs its own decoder. The published VSRN
  results include its regularising effect; this recipe trains the retrieval objective only.
- Model selection on the corpus's VALIDATION split once per epoch (the original also
  validated every 500 iterations), with the original's score R@1 + R@5 of both directions.
- A checkpoint every epoch (last + best), re-seeded per epoch so a resumed run equals an
  uninterrupted one.
Under torchrun the encoders are wrapped in DistributedDataParallel, `batch_size` is the global
batch (split evenly over the ranks), every rank takes its share of the same seeded caption
order, the triplet loss is computed on the all-gathered global batch and the BatchNorms
normalise with the global batch's statistics (`GlobalBatchNorm1d`): the gradients are those of
one process with the whole batch, as in the original's single process. Only rank 0 writes files;
rank 0's model-selection decision is broadcast.
The vocabulary is the original's procedure (train + validation captions, words seen >= 4
times) unless `vocab_path` names an existing one; it is written beside the checkpoints as
`{data_name}_vocab.pkl` so that `load_model("vsrn", checkpoint=...)` finds it.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fico_registry.errors import ConfigError, MissingInputError
from fico_registry.plugin_api.captions import CaptionTokenizer, Vocabulary, load_vocab
from fico_registry.plugin_api.checkpoints import strict_load_state_dict

from .captions import vocab_file_name
from .model import ARCH_DEFAULTS, VsrnNetwork, check_architecture, settings_from
from .plugin import CONFIGS, TRAIN_DEFAULTS
from .vocab_io import build_vocabulary, write_vocab_pickle


def hardest_negative_triplet_loss(
    images: torch.Tensor, captions: torch.Tensor, margin: float, max_violation: bool
) -> torch.Tensor:
    """The original ContrastiveLoss: hinge on every (or the hardest) negative, both directions, summed."""
    scores = images @ captions.T
    positives = scores.diag().view(-1, 1)
    cost_caption = (margin + scores - positives).clamp(min=0)  # image i against the captions of row i
    cost_image = (margin + scores - positives.T).clamp(min=0)  # caption j against the images of column j
    diagonal = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    cost_caption = cost_caption.masked_fill(diagonal, 0)
    cost_image = cost_image.masked_fill(diagonal, 0)
    if max_violation:
        cost_caption, cost_image = cost_caption.max(dim=1)[0], cost_image.max(dim=0)[0]
    return cost_caption.sum() + cost_image.sum()


def _config(options: Mapping[str, Any], model: str) -> dict[str, Any]:
    config = options.get("config", "default")
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ConfigError(f"{model} has no config {config!r}; it has: {', '.join(CONFIGS)}")
        config = CONFIGS[config]
    if not isinstance(config, Mapping):
        raise ConfigError(f"{model}: options['config'] must be a config name or a dict")
    return settings_from(config, model_name=model)


def _options(options: Mapping[str, Any], model: str) -> dict[str, Any]:
    known = {*TRAIN_DEFAULTS, "config", "epochs", "seed", "resume", "precision"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{model} training has no options {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    merged = {**TRAIN_DEFAULTS, "seed": 0, "resume": True, "precision": "fp32", **options}
    for key in ("epochs", "batch_size", "lr_update", "val_batch_size", "vocab_threshold"):
        if not isinstance(merged[key], int) or isinstance(merged[key], bool) or merged[key] <= 0:
            raise ConfigError(f"{model} training option {key} must be a positive integer, got {merged[key]!r}")
    return merged


class RegionRows:
    """Region features of a corpus, in memory (they are memory-mapped .npy files otherwise)."""

    def __init__(self, corpus: Any, img_dim: int) -> None:
        if "regions" not in corpus.features:
            raise MissingInputError(
                f"{corpus!r} has no 'regions' features: VSRN trains on bottom-up region features (n, 36, {img_dim}); "
                "attach them (SCAN's {split}_ims.npy, which the flickr30k / coco loaders find in --root)"
            )
        ref = corpus.features["regions"]
        if len(ref.shape) != 3 or ref.shape[-1] != img_dim or ref.shape[0] != corpus.n_images:
            raise MissingInputError(
                f"region features of {corpus!r} have shape {ref.shape}; expected ({corpus.n_images}, 36, {img_dim})"
            )
        self.ref = ref

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.ref.rows(images), dtype=np.float32))


def _padded(ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(seq) for seq in ids], dtype=torch.long)
    batch = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return batch, lengths


def _original_opt(
    arch: Mapping[str, Any], opts: Mapping[str, Any], vocab_size: int, model: str, out: Path
) -> argparse.Namespace:
    """The run under train.py's argument names: the `opt` every VSRN checkpoint carries."""
    return argparse.Namespace(
        data_path="", data_name=arch["data_name"], vocab_path=str(out), margin=opts["margin"],
        num_epochs=opts["epochs"], batch_size=opts["batch_size"], word_dim=arch["word_dim"],
        embed_size=arch["embed_size"], grad_clip=opts["grad_clip"], crop_size=224, num_layers=arch["num_layers"],
        learning_rate=opts["learning_rate"], lr_update=opts["lr_update"], workers=0, log_step=10, val_step=500,
        logger_name=str(out), resume="", max_violation=opts["max_violation"], img_dim=arch["img_dim"],
        finetune=False, cnn_type="vgg19", use_restval=False, measure=arch["measure"], use_abs=arch["use_abs"],
        no_imgnorm=arch["no_imgnorm"], reset_train=False, dim_vid=2048, dim_hidden=512, bidirectional=0,
        input_dropout_p=0.2, rnn_type="gru", rnn_dropout_p=0.5, dim_word=300, max_len=60, vocab_size=vocab_size,
        seed=opts["seed"], fico_model=model, caption_loss=False,
    )  # fmt: skip


@torch.no_grad()
def _embed(
    network: VsrnNetwork, regions: RegionRows, n_images: int, ids: list[list[int]], batch: int, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    network.img_enc.eval()
    network.txt_enc.eval()
    images = [
        network.img_enc(regions(np.arange(s, min(s + batch, n_images))).to(device)).cpu()
        for s in range(0, n_images, batch)
    ]
    texts = []
    for s in range(0, len(ids), batch):
        tokens, lengths = _padded(ids[s : s + batch])
        texts.append(network.txt_enc(tokens.to(device), lengths.to(device)).cpu())
    return torch.cat(images).float(), torch.cat(texts).float()


def validate(
    network: VsrnNetwork, val: Any, regions: RegionRows, ids: list[list[int]], batch: int, device: str
) -> tuple[float, dict[str, Any]]:
    """The original's selection score, R@1 + R@5 both ways (percent), on the validation split."""
    from fico_registry.evaluator.evaluate import evaluate_embeddings

    images, texts = _embed(network, regions, val.n_images, ids, batch, device)
    report = evaluate_embeddings(
        images, texts, val.caption_to_image, measure="inner_product", device="cpu", progress=False
    )
    instance = report.instance
    score = 100.0 * sum(float(instance[d][k]) for d in ("i2t", "t2i") for k in ("R@1", "R@5"))
    return score, instance


def _vocabulary(opts: Mapping[str, Any], train: Any, val: Any, tokenizer: CaptionTokenizer) -> Vocabulary:
    if opts.get("vocab_path"):
        return load_vocab(opts["vocab_path"])
    # vocab.py counts the train and dev captions of the precomp data
    return build_vocabulary([*train.captions, *val.captions], tokenizer, threshold=opts["vocab_threshold"])


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
    """Train vsrn on `train`, select on `val`; checkpoints in VSRN's `.pth.tar` layout in `out`."""
    from fico_registry.evaluator.sharded import is_main_process, rank, world_size
    from fico_registry.training import _dist
    from fico_registry.training.common import (
        Checkpointer,
        TrainingProgress,
        all_gather_with_grad,
        autocast,
        grad_scaler,
        seed_everything,
        shard,
    )
    from fico_registry.training.sharding import distributed, globalise_batchnorms

    if model != "vsrn":
        raise ConfigError(f"this recipe trains model 'vsrn', not {model!r}")
    opts = _options(options, model)
    main, world, me = is_main_process(), world_size(), rank()
    if opts["batch_size"] % world:
        raise ConfigError(f"vsrn training option batch_size {opts['batch_size']} must split evenly over {world} ranks")
    settings = _config(opts, model)
    settings["precision"] = "fp32"  # autocast handles reduced precision; weights stay fp32
    arch = {k: settings[k] for k in ARCH_DEFAULTS}
    check_architecture(arch, where=model)
    out = Path(out)

    tokenizer = CaptionTokenizer(settings["tokenizer"], settings["lowercase"])
    vocab = _vocabulary(opts, train, val, tokenizer)  # the same on every rank: built from the same captions
    vocab_file = out / vocab_file_name(arch["data_name"])
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_vocab_pickle(vocab, vocab_file)
    seed_everything(opts["seed"])
    network = VsrnNetwork(arch, {**settings, "seed": opts["seed"]}, vocab, device, model_name=model)
    img_enc, txt_enc = network.img_enc.to(device), network.txt_enc.to(device)
    if world > 1:
        globalise_batchnorms(img_enc)  # batch statistics of the global batch, as one process computes them
    params = [*txt_enc.parameters(), *img_enc.parameters()]
    optimizer = torch.optim.Adam(params, lr=opts["learning_rate"])
    scaler = grad_scaler(device, opts["precision"])

    checkpointer = Checkpointer(out)
    start_epoch, best_score, best_epoch, iters, history = 0, 0.0, None, 0, []
    state = checkpointer.latest() if opts["resume"] else None
    if state is not None:
        start_epoch, best_score, iters, history, best_epoch = _restore(
            state, network, optimizer, scaler, arch, len(vocab), checkpointer.last_path
        )

    train_ids = [vocab.encode(tokenizer(c)) for c in train.captions]
    val_ids = [vocab.encode(tokenizer(c)) for c in val.captions]
    train_regions, val_regions = RegionRows(train, arch["img_dim"]), RegionRows(val, arch["img_dim"])
    c2i = np.asarray(train.caption_to_image)
    namespace = _original_opt(arch, opts, len(vocab), model, out)
    img_run, txt_run = distributed(img_enc, device, world), distributed(txt_enc, device, world)
    local_batch = opts["batch_size"] // world
    bar = TrainingProgress(progress, model)
    epochs_run = 0
    for epoch in range(start_epoch, opts["epochs"]):
        started = time.perf_counter()
        lr = opts["learning_rate"] * (0.1 ** (epoch // opts["lr_update"]))
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = np.random.default_rng([opts["seed"], epoch]).permutation(len(c2i))  # the same on every rank
        seed_everything(opts["seed"] * 100_003 + epoch + 1_000_003 * me)
        # rank r takes every world-th caption: its step-k share is exactly its part of global batch k,
        # and every rank's share of the last (short) batch has the same size
        mine = shard(order, me, world)
        steps = math.ceil(len(mine) / local_batch)
        img_enc.train()
        txt_enc.train()
        total = 0.0
        with bar.epoch(epoch, opts["epochs"], steps) as advance:
            for step in range(steps):
                caps = mine[step * local_batch : (step + 1) * local_batch]
                if len(caps) * world < 2:
                    continue  # a BatchNorm in train mode needs more than one sample
                tokens, lengths = _padded([train_ids[j] for j in caps])
                with autocast(device, opts["precision"]):
                    img_emb = img_run(train_regions(c2i[caps]).to(device))
                    cap_emb = txt_run(tokens.to(device), lengths.to(device))
                # the loss sees the global batch (in rank order): every caption's hardest negative
                # is searched among all of it, as in one process
                img_all, cap_all = all_gather_with_grad(img_emb.float()), all_gather_with_grad(cap_emb.float())
                loss = hardest_negative_triplet_loss(img_all, cap_all, opts["margin"], opts["max_violation"])
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if opts["grad_clip"] > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(params, opts["grad_clip"])
                scaler.step(optimizer)
                scaler.update()
                iters += 1
                total += float(loss.detach())
                advance(1, loss=float(loss.detach()), lr=lr)
        score, metrics = validate(network, val, val_regions, val_ids, opts["val_batch_size"], device)
        is_best = bool(_dist.broadcast_object(score > best_score))  # rank 0 decides for every rank
        if is_best:
            best_score, best_epoch = score, epoch + 1
        seconds = time.perf_counter() - started
        history.append(
            {
                "epoch": epoch + 1,
                "loss": total / max(steps, 1),
                "val_r1_r5_sum": score,
                "val": metrics,
                "lr": lr,
                "seconds": round(seconds, 2),
            }
        )
        epochs_run += 1
        if main:  # only rank 0 writes
            checkpointer.save(
                epoch,
                {
                    "epoch": epoch + 1,
                    "model": [img_enc.state_dict(), txt_enc.state_dict()],
                    "best_rsum": best_score,
                    "opt": namespace,
                    "Eiters": iters,
                    "fico_resume": {
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(),
                        "history": history,
                        "best_epoch": best_epoch,
                    },
                },
                is_best=is_best,
            )
            bar.log(
                f"{model} epoch {epoch + 1}/{opts['epochs']}: loss {history[-1]['loss']:.4f}  val R@1+R@5 {score:.1f}{'  (best)' if is_best else ''}  [{seconds:.1f}s]"
            )
        if world > 1:
            _dist.barrier()  # rank 0's files exist before any rank goes on (or returns their paths)
    best = checkpointer.best_path if checkpointer.best_path.exists() else checkpointer.last_path
    return {
        "checkpoint": str(best),
        "last_checkpoint": str(checkpointer.last_path),
        "vocab_file": str(vocab_file),
        "config": opts["config"],
        "best_epoch": best_epoch,
        "best_rsum": best_score,
        "selection": "R@1 + R@5, both directions, validation split (as VSRN's train.py)",
        "epochs_run": epochs_run,
        "history": history,
        "objective": "hardest-negative triplet (VSE++ max_violation); caption-generation loss omitted",
    }


def _restore(
    state: Mapping[str, Any],
    network: VsrnNetwork,
    optimizer: Any,
    scaler: Any,
    arch: Mapping[str, Any],
    vocab_size: int,
    path: Path,
) -> tuple[int, float, int, list, int | None]:
    """Continue a run: weights (strictly), optimizer, epoch counter, best score so far."""
    saved = vars(state["opt"]) if isinstance(state.get("opt"), argparse.Namespace) else {}
    for key, value in (*arch.items(), ("vocab_size", vocab_size)):
        if key in saved and saved[key] != value:
            raise ConfigError(
                f"{path} was trained with {key}={saved[key]!r}, this run asks for {value!r}: use another --out or --no-resume"
            )
    models = state.get("model")
    if not isinstance(models, list) or len(models) != 2:
        raise ConfigError(f"{path} is not a VSRN checkpoint of this recipe: use another --out or --no-resume")
    strict_load_state_dict(network.img_enc, models[0], what=f"{path} model[0] (img_enc)")
    strict_load_state_dict(network.txt_enc, models[1], what=f"{path} model[1] (txt_enc)")
    extra = state.get("fico_resume") or {}
    if "optimizer" in extra:
        optimizer.load_state_dict(extra["optimizer"])
    if extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    return (
        int(state["epoch"]),
        float(state.get("best_rsum", 0.0)),
        int(state.get("Eiters", 0)),
        list(extra.get("history", [])),
        extra.get("best_epoch"),
    )
