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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fico_registry.errors import ConfigError
from fico_registry.plugin_api.captions import CaptionTokenizer, Vocabulary, load_vocab
from fico_registry.plugin_api.checkpoints import strict_load_state_dict
from fico_registry.plugin_api.region_features import RegionFeatures
from fico_registry.plugin_api.training import loop, resolve_model_config, vse_hinge_loss

from .captions import vocab_file_name
from .model import ARCH_DEFAULTS, VsrnNetwork, check_architecture, settings_from
from .plugin import TRAIN_DEFAULTS
from .vocab_io import build_vocabulary, write_vocab_pickle


def hardest_negative_triplet_loss(
    images: torch.Tensor, captions: torch.Tensor, margin: float, max_violation: bool
) -> torch.Tensor:
    """The original ContrastiveLoss on the inner products: the shared VSE++ hinge, both directions, summed."""
    return vse_hinge_loss(images @ captions.T, margin, max_violation)


@dataclass(frozen=True)
class Options(loop.RecipeOptions):
    learning_rate: float
    lr_update: int
    margin: float
    max_violation: bool
    grad_clip: float
    val_batch_size: int
    vocab_path: str | None
    vocab_threshold: int

    DEFAULTS = TRAIN_DEFAULTS
    TITLE = "vsrn"
    POSITIVE = ("epochs", "batch_size", "lr_update", "val_batch_size", "vocab_threshold")


def _config(options: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The run's model settings: the card's config (options["config"]: a name or a dict) as the model reads it."""
    cfg, _ = resolve_model_config(model, options.get("config", "default"))
    return settings_from(cfg, model_name=model)


def _padded(ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(seq) for seq in ids], dtype=torch.long)
    batch = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return batch, lengths


def _original_opt(arch: Mapping[str, Any], opts: Options, vocab_size: int, model: str, out: Path) -> argparse.Namespace:
    """The run under train.py's argument names: the `opt` every VSRN checkpoint carries."""
    return argparse.Namespace(
        data_path="", data_name=arch["data_name"], vocab_path=str(out), margin=opts.margin,
        num_epochs=opts.epochs, batch_size=opts.batch_size, word_dim=arch["word_dim"],
        embed_size=arch["embed_size"], grad_clip=opts.grad_clip, crop_size=224, num_layers=arch["num_layers"],
        learning_rate=opts.learning_rate, lr_update=opts.lr_update, workers=0, log_step=10, val_step=500,
        logger_name=str(out), resume="", max_violation=opts.max_violation, img_dim=arch["img_dim"],
        finetune=False, cnn_type="vgg19", use_restval=False, measure=arch["measure"], use_abs=arch["use_abs"],
        no_imgnorm=arch["no_imgnorm"], reset_train=False, dim_vid=2048, dim_hidden=512, bidirectional=0,
        input_dropout_p=0.2, rnn_type="gru", rnn_dropout_p=0.5, dim_word=300, max_len=60, vocab_size=vocab_size,
        seed=opts.seed, fico_model=model, caption_loss=False,
    )  # fmt: skip


@torch.no_grad()
def _embed(
    network: VsrnNetwork, regions: RegionFeatures, n_images: int, ids: list[list[int]], batch: int, device: str
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
    network: VsrnNetwork, val: Any, regions: RegionFeatures, ids: list[list[int]], batch: int, device: str
) -> tuple[float, dict[str, Any]]:
    """The original's selection score, R@1 + R@5 both ways (percent), on the validation split."""
    from fico_registry import evaluate_embeddings

    images, texts = _embed(network, regions, val.n_images, ids, batch, device)
    report = evaluate_embeddings(
        images, texts, val.caption_to_image, measure="inner_product", device="cpu", progress=False
    )
    instance = report.instance
    score = 100.0 * sum(float(instance[d][k]) for d in ("i2t", "t2i") for k in ("R@1", "R@5"))
    return score, instance


def _vocabulary(opts: Options, train: Any, val: Any, tokenizer: CaptionTokenizer) -> Vocabulary:
    if opts.vocab_path:
        return load_vocab(opts.vocab_path)
    # vocab.py counts the train and dev captions of the precomp data
    return build_vocabulary([*train.captions, *val.captions], tokenizer, threshold=opts.vocab_threshold)


class VsrnRecipe(loop.EpochRecipe):
    """VSRN's retrieval encoders on the shared epoch loop: the hinge loss on the gathered global batch."""

    score_format = "val R@1+R@5 {:.1f}"

    def __init__(
        self, *, model: str, train: Any, val: Any, out: Path, opts: Options, device: str, progress: bool = False
    ) -> None:
        from fico_registry.plugin_api.training import (
            Checkpointer,
            distributed,
            globalise_batchnorms,
            grad_scaler,
            seed_everything,
        )

        if model != "vsrn":
            raise ConfigError(f"this recipe trains model 'vsrn', not {model!r}")
        super().__init__(model=model, out=out, opts=opts, device=device)
        settings = settings_from(self.cfg, model_name=model)
        settings["precision"] = "fp32"  # autocast handles reduced precision; weights stay fp32
        self.arch = arch = {k: settings[k] for k in ARCH_DEFAULTS}
        check_architecture(arch, where=model)
        tokenizer = CaptionTokenizer(settings["tokenizer"], settings["lowercase"])
        self.vocab = vocab = _vocabulary(opts, train, val, tokenizer)  # the same on every rank: from the same captions
        self.vocab_file = self.out / vocab_file_name(arch["data_name"])
        if self.main:
            write_vocab_pickle(vocab, self.vocab_file)
        seed_everything(opts.seed)
        self.network = VsrnNetwork(arch, {**settings, "seed": opts.seed}, vocab, device, model_name=model)
        self.img_enc, self.txt_enc = self.network.img_enc.to(device), self.network.txt_enc.to(device)
        if self.world > 1:
            globalise_batchnorms(self.img_enc)  # batch statistics of the global batch, as one process computes them
        self.params = [*self.txt_enc.parameters(), *self.img_enc.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=opts.learning_rate)
        self.scaler = grad_scaler(device, opts.precision)
        self.checkpointer = Checkpointer(self.out)
        self.train_ids = [vocab.encode(tokenizer(c)) for c in train.captions]
        self.val_ids = [vocab.encode(tokenizer(c)) for c in val.captions]
        self.train_regions = RegionFeatures(train, arch["img_dim"], model=model)
        self.val_regions = RegionFeatures(val, arch["img_dim"], model=model)
        self.c2i = np.asarray(train.caption_to_image)
        self.val = val
        self.namespace = _original_opt(arch, opts, len(vocab), model, self.out)
        self.img_run, self.txt_run = (distributed(net, device, self.world) for net in (self.img_enc, self.txt_enc))

    def restore(self) -> loop.LoopState | None:
        """Continue a run: weights (strictly), optimizer, epoch counter, best score so far."""
        state = self.checkpointer.latest()
        if state is None:
            return None
        path = self.checkpointer.last_path
        saved = vars(state["opt"]) if isinstance(state.get("opt"), argparse.Namespace) else {}
        for key, value in (*self.arch.items(), ("vocab_size", len(self.vocab))):
            if key in saved and saved[key] != value:
                raise ConfigError(
                    f"{path} was trained with {key}={saved[key]!r}, this run asks for {value!r}: use another --out "
                    "or --no-resume"
                )
        models = state.get("model")
        if not isinstance(models, list) or len(models) != 2:
            raise ConfigError(f"{path} is not a VSRN checkpoint of this recipe: use another --out or --no-resume")
        strict_load_state_dict(self.img_enc, models[0], what=f"{path} model[0] (img_enc)")
        strict_load_state_dict(self.txt_enc, models[1], what=f"{path} model[1] (txt_enc)")
        return self.vse_loop_state(state)

    def learning_rate(self, epoch: int) -> float:
        return self.opts.learning_rate * (0.1 ** (epoch // self.opts.lr_update))

    def n_samples(self) -> int:
        return len(self.c2i)

    def begin_epoch(self, epoch: int, order: np.ndarray) -> list[np.ndarray]:
        self.img_enc.train()
        self.txt_enc.train()
        # a BatchNorm in train mode needs more than one sample: a global batch of one is left out
        return loop.rank_batches(order, self.opts.batch_size, self.rank, self.world, min_global=2)

    def step(self, caps: np.ndarray, epoch: int, step: int) -> float:
        from fico_registry.plugin_api.training import all_gather_with_grad, autocast

        tokens, lengths = _padded([self.train_ids[j] for j in caps])
        with autocast(self.device, self.opts.precision):
            img_emb = self.img_run(self.train_regions(self.c2i[caps]).to(self.device))
            cap_emb = self.txt_run(tokens.to(self.device), lengths.to(self.device))
        # the loss sees the global batch (in rank order): every caption's hardest negative is searched among all of it
        img_all, cap_all = all_gather_with_grad(img_emb.float()), all_gather_with_grad(cap_emb.float())
        loss = hardest_negative_triplet_loss(img_all, cap_all, self.opts.margin, self.opts.max_violation)
        loop.optimizer_step(loss, self.optimizer, self.params, scaler=self.scaler, grad_clip=self.opts.grad_clip)
        return float(loss.detach())

    def validate(self, epoch: int) -> loop.Validation:
        batch = self.opts.val_batch_size
        score, metrics = validate(self.network, self.val, self.val_regions, self.val_ids, batch, self.device)
        return loop.Validation(score, {"val_r1_r5_sum": score, "val": metrics})

    def checkpoint(self, epoch: int, state: loop.LoopState) -> dict[str, Any]:
        model = [self.img_enc.state_dict(), self.txt_enc.state_dict()]
        return self.vse_checkpoint(epoch + 1, model, state, self.namespace)

    def result(self) -> dict[str, Any]:
        return {
            "vocab_file": str(self.vocab_file),
            "config": self.opts.config,
            "selection": "R@1 + R@5, both directions, validation split (as VSRN's train.py)",
            "objective": "hardest-negative triplet (VSE++ max_violation); caption-generation loss omitted",
        }


train = loop.recipe_trainer(
    VsrnRecipe, Options, "Train vsrn on `train`, select on `val`; checkpoints in VSRN's `.pth.tar` layout in `out`."
)
