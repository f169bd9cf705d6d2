"""Training ADV's re-rank model (adv-64 / adv-2048) the way the original `train_reranking.py` does.

Objective per batch of (caption, its image) pairs, as `reranking_model.ReRankSAEM.forward_loss`:
  hardest-negative triplet loss on the cosine of the relaxed (tanh) codes, margin 0.2 (`loss.ContrastiveLoss`)
  + alpha * angular loss on L2-normalised codes, alpha = 0.5 * 0.1 ** (epoch // 5) while epoch <= 20
  + 0.01 * sum of the norms of the image branch's weights (biases and LayerNorm gamma/beta excluded)
  + 0.5 * BCE of a concept head on the caption code against the image's concept labels
  + 0.5 * adversary loss (cos(image, adversarial caption) - cos(image, caption) + 0.5)_+  (optional)
Adam, lr 1e-4 divided by 10 every 10 epochs, gradient norm clipped at 2, batch 128, 100 epochs,
BERT frozen (still in train mode: its dropout is active, as in the original).
Deviations, on purpose: model selection on the corpus's VALIDATION split (the original
validated on test), a checkpoint every epoch (the original saved only improvements), and
re-seeding at each epoch so that a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fico_registry.errors import CheckpointError, ConfigError
from fico_registry.plugin_api.checkpoints import load_torch_checkpoint, strict_load_state_dict
from fico_registry.plugin_api.region_features import RegionFeatures
from fico_registry.plugin_api.training import (
    loop,
    resolve_model_config,  # noqa: F401 (used by bench_train_cost.py, tests)
    vse_hinge_loss,
)

from .adversaries import (  # noqa: F401 (tests and the bench use them from here)
    ADVERSARY_TYPES,
    NUMBER_WORDS,
    STOP_WORDS,
    build_vocab,
    file_adversaries,
    generated_adversaries,
    make_tokenizer,
    tokenize_all,
)
from .bert import DenseNorm, Embeddings, SelfAttention
from .config import AdvConfig
from .hashing import to_codes
from .image_net import TransformerBinaryMapping
from .plugin import TRAIN_DEFAULTS
from .text_net import BertBinaryMapping
from .wordpiece import WordPieceTokenizer

# The recipe's options and where they come from live in plugin.py (registered without importing torch).
DEFAULTS = TRAIN_DEFAULTS


@dataclass(frozen=True)
class Options(loop.RecipeOptions):
    learning_rate: float
    lr_update: int
    grad_clip: float
    margin: float
    max_violation: bool
    reg_weight: float
    angular_weight: float
    angular_decay_every: int
    angular_until_epoch: int
    need_concept_label: int
    concept_weight: float
    concept_hidden: int
    need_adversary_data: int
    adversary_type: str
    adversary_num: int
    adversary_step: int
    adv_margin: float
    adversary_weight: float
    adversary_file: str | None
    dropout: float
    bert_init: str | None
    freeze_bert: bool
    vocab: str
    vocab_file: str | None
    val_batch_size: int

    DEFAULTS = DEFAULTS
    TITLE = "ADV"
    POSITIVE = ("epochs", "batch_size", "lr_update", "concept_hidden", "val_batch_size", "angular_decay_every")

    def check(self) -> None:
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: the ranking losses need in-batch negatives")
        if self.adversary_type not in ADVERSARY_TYPES:
            raise ConfigError(
                f"adversary_type must be one of {', '.join(ADVERSARY_TYPES)}, got {self.adversary_type!r}"
            )
        if self.vocab not in ("config", "build"):
            raise ConfigError(f"vocab must be 'config' or 'build', got {self.vocab!r}")
        if self.vocab == "build" and self.bert_init:
            raise ConfigError("vocab='build' makes a new vocabulary, which a pretrained BERT (bert_init) cannot read")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if self.need_adversary_data and self.adversary_num <= 0:
            raise ConfigError("need_adversary_data=1 needs adversary_num >= 1")


# -- losses (loss.py) ---------------------------------------------------------------------------
def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row pair; a zero row gives 0 (the original replaces NaN by 0)."""
    scores = (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T
    return torch.nan_to_num(scores, nan=0.0)


def triplet_loss(images: torch.Tensor, captions: torch.Tensor, margin: float, max_violation: bool) -> torch.Tensor:
    """loss.ContrastiveLoss on the cosine of every (image, caption) pair of the batch (the shared VSE++ hinge)."""
    return vse_hinge_loss(cosine_matrix(images, captions), margin, max_violation)


def angular_loss(images: torch.Tensor, captions: torch.Tensor, angle_bound: float = 1.0) -> torch.Tensor:
    """Angular loss (Wang et al. 2017) with the hardest negative, both directions, as loss.AngularLoss."""

    def one_way(anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        # x[i, j] = 4 tan^2 (a_i + p_i).p_j - 2 (1 + tan^2) a_i.p_i over the negatives j != i
        x = 4.0 * angle_bound * (anchors + positives) @ positives.T
        x = x - 2.0 * (1.0 + angle_bound) * (anchors * positives).sum(dim=1, keepdim=True)
        eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
        return F.softplus(x.masked_fill(eye, float("-inf")).max(dim=1).values).sum()

    return one_way(images, captions) + one_way(captions, images)


def adversary_loss(
    captions: torch.Tensor, adversaries: torch.Tensor, images: torch.Tensor, margin: float
) -> torch.Tensor:
    """(cos(image, adversarial caption) - cos(image, caption) + margin)_+, summed (loss.AdversaryLossWithImg)."""
    pair = F.cosine_similarity(images, captions, dim=-1).unsqueeze(1)
    adv = F.cosine_similarity(images.unsqueeze(1), adversaries, dim=-1)
    return (adv - pair + margin).clamp(min=0).sum()


def weight_norms(module: nn.Module) -> torch.Tensor:
    """Sum of the L2 norms of the weights, skipping biases and LayerNorm gamma / beta."""
    norms = [
        p.norm() for name, p in module.named_parameters() if name.rsplit(".", 1)[-1] not in ("bias", "gamma", "beta")
    ]
    return torch.stack(norms).sum()


def angular_alpha(epoch: int, opts: Options) -> float:
    if epoch > opts.angular_until_epoch:
        return 0.0
    return opts.angular_weight * (0.1 ** (epoch // opts.angular_decay_every))


# -- the networks, with the dropout the original applies in training -----------------------------
def _attention_with_dropout(p: float):
    def forward(self: SelfAttention, hidden: torch.Tensor, score_bias: torch.Tensor | None) -> torch.Tensor:
        q, k, v = (self._split_heads(proj(hidden)) for proj in (self.query, self.key, self.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)
        if score_bias is not None:
            scores = scores + score_bias
        probs = F.dropout(scores.softmax(dim=-1), p, self.training)
        context = probs @ v
        batch, _, length, _ = context.shape
        return context.transpose(1, 2).reshape(batch, length, self.heads * self.head_size)

    return forward


def add_training_dropout(net: nn.Module, p: float) -> None:
    """Dropout where the original BERT code has it (embeddings, attention probabilities, both dense
    outputs before the residual) and before the caption mapping; identity in eval mode.

    The plugin's modules leave dropout out (it holds no parameters and is off at evaluation);
    hooks add it back without changing a single parameter name.
    """
    if p <= 0:
        return

    def drop_output(module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        return F.dropout(output, p, module.training)

    for module in net.modules():
        if isinstance(module, Embeddings):
            module.register_forward_hook(drop_output)
        elif isinstance(module, DenseNorm):
            module.dense.register_forward_hook(drop_output)
        elif isinstance(module, SelfAttention):
            module.forward = types.MethodType(_attention_with_dropout(p), module)
    if isinstance(net, BertBinaryMapping):
        net.mapping.register_forward_pre_hook(lambda module, args: (F.dropout(args[0], p, module.training),))


def concept_head(final_dims: int, hidden: int, classes: int) -> nn.Sequential:
    """ReRankSAEM.concept_enc: Linear-ReLU-Linear-Sigmoid (state keys 0.* and 2.*)."""
    return nn.Sequential(nn.Linear(final_dims, hidden), nn.ReLU(), nn.Linear(hidden, classes), nn.Sigmoid())


def load_bert_init(text_net: BertBinaryMapping, path: str) -> None:
    """Google BERT weights (converted pytorch_model.bin or a transformers model.safetensors) into `bert.*`."""
    file = Path(path).expanduser()
    if file.is_dir():
        found = [file / n for n in ("pytorch_model.bin", "model.safetensors") if (file / n).is_file()]
        if not found:
            raise CheckpointError(f"{file} holds neither pytorch_model.bin nor model.safetensors of BERT-base uncased")
        file = found[0]
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(file))
    else:
        raw = load_torch_checkpoint(file)
    own = text_net.bert.state_dict()
    mapped = {}
    for key, value in raw.items():
        name = key[len("bert.") :] if key.startswith("bert.") else key
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        if name in own:
            mapped[name] = value
    strict_load_state_dict(text_net.bert, mapped, what=f"BERT weights {file}")


# -- vocabulary and data ---------------------------------------------------------------------------
def _opt_namespace(
    model: str, cfg: dict[str, Any], opts: Options, corpus: Any, concept_num: int, vocab: Path | None
) -> argparse.Namespace:
    """The run's options under the original argparse names (what train_reranking.py pickles as `opt`)."""
    return argparse.Namespace(
        model_name="rerank_model",
        data_name=f"{corpus.name}_precomp",
        final_dims=cfg["final_dims"],
        img_dim=cfg["img_dim"],
        max_words=cfg["max_words"],
        txt_stru=cfg["txt_stru"],
        trans_cfg="t_cfg.json",
        bert_path=str(Path(opts.bert_init).parent) if opts.bert_init else "",
        vocab_file=str(vocab) if vocab else cfg.get("vocab_file"),
        init_checkpoint=opts.bert_init,
        do_lower_case=cfg.get("do_lower_case", True),
        need_raw_image=0,
        need_roi_feature=1,
        need_concept_label=opts.need_concept_label,
        concept_num=concept_num,
        need_adversary_data=opts.need_adversary_data,
        need_rephrase_data=0,
        adversary_type=opts.adversary_type,
        adversary_num=opts.adversary_num,
        adversary_step=opts.adversary_step,
        adv_margin=opts.adv_margin,
        margin=opts.margin,
        max_violation=opts.max_violation,
        num_epochs=opts.epochs,
        batch_size=opts.batch_size,
        learning_rate=opts.learning_rate,
        lr_update=opts.lr_update,
        grad_clip=opts.grad_clip,
        binary="True",
        seed=opts.seed,
        fico_model=model,
        fico_config=json.loads(json.dumps(cfg)),
    )


@torch.no_grad()
def encode_codes(
    img_net: nn.Module,
    txt_net: nn.Module,
    regions: RegionFeatures,
    n_images: int,
    ids: torch.Tensor,
    mask: torch.Tensor,
    batch: int,
    device: str,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    from fico_registry.plugin_api.training import autocast

    img_net.eval()
    txt_net.eval()
    images, texts = [], []
    with autocast(device, precision):
        for s in range(0, n_images, batch):
            images.append(to_codes(img_net(regions(np.arange(s, min(s + batch, n_images))).to(device))).cpu())
        for s in range(0, len(ids), batch):
            texts.append(to_codes(txt_net(ids[s : s + batch].to(device), mask[s : s + batch].to(device))).cpu())
    return torch.cat(images), torch.cat(texts)


def validate(
    img_net: nn.Module,
    txt_net: nn.Module,
    val: Any,
    regions: RegionFeatures,
    ids: torch.Tensor,
    mask: torch.Tensor,
    opts: Options,
    device: str,
) -> tuple[float, dict[str, Any]]:
    """R@1+5+10 both ways (percent) of the sign codes on the validation split, by Hamming distance."""
    from fico_registry import evaluate_embeddings
    from fico_registry.plugin_api.training import validation_rsum

    images, texts = encode_codes(
        img_net, txt_net, regions, val.n_images, ids, mask, opts.val_batch_size, device, opts.precision
    )
    report = evaluate_embeddings(images, texts, val.caption_to_image, measure="hamming", device="cpu", progress=False)
    return validation_rsum(report), report.instance


@dataclass
class Networks:
    """The three trained modules, and what the steps call (DDP wrappers under torchrun)."""

    image: nn.Module
    text: BertBinaryMapping
    concept: nn.Module | None
    image_run: nn.Module
    text_run: nn.Module
    concept_run: nn.Module | None

    @classmethod
    def build(cls, cfg: AdvConfig, opts: Options, concept_num: int, device: str, world: int) -> Networks:
        image = TransformerBinaryMapping(cfg.img_dim, cfg.final_dims, cfg.trans_shape)
        text = BertBinaryMapping(cfg.bert_shape, cfg.final_dims, cfg.cnn_channels)
        concept = concept_head(cfg.final_dims, opts.concept_hidden, concept_num) if concept_num else None
        if opts.bert_init:
            load_bert_init(text, opts.bert_init)
        if opts.freeze_bert:
            text.bert.requires_grad_(False)  # no graph is built through it: its inputs are token ids
        for net in (image, text):
            add_training_dropout(net, opts.dropout)
        for net in (image, text, concept):
            if net is not None:
                net.to(device)
        if world == 1:
            return cls(image, text, concept, image, text, concept)
        ids = [torch.device(device).index] if device.startswith("cuda") else None
        ddp = lambda m: None if m is None else nn.parallel.DistributedDataParallel(m, device_ids=ids)  # noqa: E731
        return cls(image, text, concept, ddp(image), ddp(text), ddp(concept))

    @property
    def modules(self) -> list[nn.Module]:
        """In the order of the checkpoint's `model` list: img_enc, txt_enc(, concept_enc)."""
        return [m for m in (self.image, self.text, self.concept) if m is not None]

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules for p in m.parameters() if p.requires_grad]


@dataclass
class TrainingData:
    """Everything a step indexes by caption: token ids, the image of each caption, its features and labels."""

    caption_to_image: np.ndarray
    ids: torch.Tensor
    mask: torch.Tensor
    regions: RegionFeatures
    concept_labels: torch.Tensor | None
    adv_ids: torch.Tensor | None
    adv_mask: torch.Tensor | None

    @classmethod
    def build(cls, corpus: Any, tokenizer: WordPieceTokenizer, cfg: AdvConfig, opts: Options) -> TrainingData:
        captions = list(corpus.captions)
        ids, mask = tokenize_all(tokenizer, captions, cfg.max_words)
        labels = torch.from_numpy(np.asarray(corpus.labels, dtype=np.float32)) if opts.need_concept_label else None
        adv_ids = adv_mask = None
        if opts.need_adversary_data:
            texts = (
                file_adversaries(opts.adversary_file, captions, opts.adversary_type, opts.adversary_num)
                if opts.adversary_file
                else generated_adversaries(captions, opts.adversary_type, opts.adversary_num, opts.seed)
            )
            flat_ids, flat_mask = tokenize_all(tokenizer, [t for group in texts for t in group], cfg.max_words)
            adv_ids = flat_ids.view(len(texts), opts.adversary_num, -1)
            adv_mask = flat_mask.view(len(texts), opts.adversary_num, -1)
        regions = RegionFeatures(corpus, cfg.img_dim, model="ADV")
        return cls(np.asarray(corpus.caption_to_image), ids, mask, regions, labels, adv_ids, adv_mask)


def batch_loss(
    nets: Networks, data: TrainingData, caps: np.ndarray, epoch: int, opts: Options, device: str, world: int
) -> torch.Tensor:
    """ReRankSAEM.forward_loss on the captions `caps` (this rank's part of the batch)."""
    from fico_registry.plugin_api.training import all_gather_with_grad, autocast

    images = data.caption_to_image[caps]
    use_adversaries = data.adv_ids is not None and epoch > opts.adversary_step
    with autocast(device, opts.precision):
        img_code = nets.image_run(data.regions(images).to(device))
        cap_code = nets.text_run(data.ids[caps].to(device), data.mask[caps].to(device))
        if use_adversaries:
            flat = nets.text_run(
                data.adv_ids[caps].flatten(0, 1).to(device), data.adv_mask[caps].flatten(0, 1).to(device)
            )
    img_local, cap_local = img_code.float(), cap_code.float()
    # the ranking losses see the global batch, as under the original's DataParallel
    img_all, cap_all = all_gather_with_grad(img_local), all_gather_with_grad(cap_local)
    loss = triplet_loss(img_all, cap_all, opts.margin, opts.max_violation)
    alpha = angular_alpha(epoch, opts)
    if alpha > 0 and len(img_all) > 1:
        loss = loss + alpha * angular_loss(F.normalize(img_all, dim=1, eps=0), F.normalize(cap_all, dim=1, eps=0))
    loss = loss + opts.reg_weight * weight_norms(nets.image)
    if nets.concept_run is not None:
        predicted = nets.concept_run(cap_local).float()
        loss = loss + opts.concept_weight * F.binary_cross_entropy(predicted, data.concept_labels[images].to(device))
    if use_adversaries:
        adv = adversary_loss(
            cap_local, flat.float().view(len(caps), opts.adversary_num, -1), img_local, opts.adv_margin
        )
        # a sum over this rank's captions: DDP averages the ranks' gradients, so scale by the rank count
        loss = loss + opts.adversary_weight * world * adv
    return loss


class AdvRecipe(loop.EpochRecipe):
    """ReRankSAEM's training on the shared epoch loop: the step is `batch_loss`; checkpoints in ADV's layout."""

    loss_per_rank = True  # the concept and adversary terms are per rank: the epoch loss averages the ranks'

    def __init__(
        self, *, model: str, train: Any, val: Any, out: Path, opts: Options, device: str, progress: bool = False
    ) -> None:
        from fico_registry.plugin_api.training import Checkpointer, grad_scaler, seed_everything

        super().__init__(model=model, out=out, opts=opts, device=device)
        if opts.need_concept_label and train.labels is None:
            raise ConfigError(
                f"{train!r} has no labels for ADV's concept loss: attach per-image concept / category labels, "
                "or pass --set need_concept_label=0"
            )
        cfg, config_name = self.cfg, self.config_name
        named = dict(cfg)
        tokenizer, self.vocab_path = make_tokenizer(cfg, opts, list(train.captions), self.out, write=self.main)
        if cfg != named:
            config_name = None  # a new vocabulary changed the model: the card's named config no longer describes it
        self.cfg, self.config_name = cfg, config_name
        adv_cfg = AdvConfig.from_dict(cfg)
        if adv_cfg.image_backbone != "regions":
            raise ConfigError(
                f"{model}: this recipe trains the region re-rank model; its config says {adv_cfg.image_backbone}"
            )
        concept_num = int(train.labels.shape[1]) if opts.need_concept_label else 0
        seed_everything(opts.seed)
        self.nets = Networks.build(adv_cfg, opts, concept_num, device, self.world)
        self.params = self.nets.parameters()
        self.optimizer = torch.optim.Adam(self.params, lr=opts.learning_rate)
        self.scaler = grad_scaler(device, opts.precision)
        self.checkpointer = Checkpointer(self.out)
        self.data = TrainingData.build(train, tokenizer, adv_cfg, opts)
        self.val = val
        self.val_ids, self.val_mask = tokenize_all(tokenizer, list(val.captions), adv_cfg.max_words)
        self.val_regions = RegionFeatures(val, adv_cfg.img_dim, model="ADV")
        self.namespace = _opt_namespace(model, cfg, opts, train, concept_num, self.vocab_path)

    def restore(self) -> loop.LoopState | None:
        """Continue a run: weights (strictly), optimizer, epoch counter, best score so far."""
        state = self.checkpointer.latest()
        if state is None:
            return None
        path, nets, cfg = self.checkpointer.last_path, self.nets.modules, self.cfg
        opt = state.get("opt")
        saved = dict(vars(opt)) if opt is not None else {}
        for key in ("final_dims", "img_dim", "max_words"):
            if key in saved and saved[key] != cfg.get(key):
                raise ConfigError(
                    f"{path} was trained with {key}={saved[key]}, this run asks for {cfg.get(key)}: use another "
                    "--out or --no-resume"
                )
        models = state.get("model")
        if not isinstance(models, list) or len(models) != len(nets):
            raise ConfigError(
                f"{path} holds {len(models) if isinstance(models, list) else '?'} state dicts, this run builds "
                f"{len(nets)} (need_concept_label changed?): use another --out or --no-resume"
            )
        for i, (net, weights) in enumerate(zip(nets, models, strict=True)):
            strict_load_state_dict(net, weights, what=f"{path} model[{i}]")
        return self.vse_loop_state(state)

    def learning_rate(self, epoch: int) -> float:
        return self.opts.learning_rate * (0.1 ** (epoch // self.opts.lr_update))

    def n_samples(self) -> int:
        return len(self.data.caption_to_image)

    def begin_epoch(self, epoch: int, order: np.ndarray) -> list[np.ndarray]:
        for net in self.nets.modules:
            net.train()
        return loop.rank_batches(order, self.opts.batch_size, self.rank, self.world)

    def step(self, batch: np.ndarray, epoch: int, step: int) -> float:
        loss = batch_loss(self.nets, self.data, batch, epoch, self.opts, self.device, self.world)
        loop.optimizer_step(loss, self.optimizer, self.params, scaler=self.scaler, grad_clip=self.opts.grad_clip)
        return float(loss.detach())

    def validate(self, epoch: int) -> loop.Validation:
        rsum, metrics = validate(
            self.nets.image,
            self.nets.text,
            self.val,
            self.val_regions,
            self.val_ids,
            self.val_mask,
            self.opts,
            self.device,
        )
        return loop.Validation(rsum, {"val_rsum": rsum, "val": metrics})

    def checkpoint(self, epoch: int, state: loop.LoopState) -> dict[str, Any]:
        return self.vse_checkpoint(epoch + 1, [m.state_dict() for m in self.nets.modules], state, self.namespace)

    def result(self) -> dict[str, Any]:
        opts = self.opts
        return {
            "config": self.config_name if self.config_name is not None else self.cfg,
            "vocab_file": None if self.vocab_path is None else str(self.vocab_path),
            "objective": ("triplet (hardest negative)" if opts.max_violation else "triplet (sum of violations)")
            + " + angular + image weight norm"
            + (" + concept BCE" if self.nets.concept is not None else "")
            + (" + adversary" if self.data.adv_ids is not None else ""),
        }


train = loop.recipe_trainer(
    AdvRecipe, Options, "Train adv-64 / adv-2048 on `train`, select on `val`; ADV's `.pth.tar` checkpoints in `out`."
)
