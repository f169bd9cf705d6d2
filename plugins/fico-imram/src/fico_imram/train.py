"""Training IMRAM the way the original `train_gpus.py` does, on SCAN's training loop (fico_scan.train).

The same ContrastiveLoss (margin 0.2, max_violation) on the summed IMRAM scores of the batch
(Text-IMRAM, Image-IMRAM or both, per model_mode, each summed over iteration_step steps),
Adam over all of the model's parameters (encoders and the gated-memory layers), learning
rate x 0.1 every lr_update epochs, gradient norm clipped at 2. The checkpoint is train_gpus.py's
`{"epoch": epoch + 1, "model": <nn.DataParallel state dict, keys 'module.'>, "best_rsum", "opt"}`.
"""

from __future__ import annotations

from typing import Any

import torch
from fico_scan.train import Recipe, Trainable, recipe_train

from .model import IMRAM_OPT_DEFAULTS, ImramEncoder
from .plugin import TRAIN_DEFAULTS


def _build(options: dict[str, Any], vocab: Any, device: str) -> Trainable:
    encoder = ImramEncoder(options, vocab, device)
    encoder.device = torch.device(device)
    return encoder


IMRAM_RECIPE = Recipe(
    title="IMRAM",
    opt_defaults=IMRAM_OPT_DEFAULTS,
    build=_build,
    modules=lambda e: [e.net],
    parameters=lambda e: list(e.net.parameters()),  # optim.Adam(model.parameters())
    original_state=lambda e: e.original_state(),
    evaluator=lambda e: e,
    extra_opt={"pos_emb": False, "gpuid": "0"},
    epoch_saved=lambda epoch: epoch + 1,  # train_gpus.py saves 'epoch': epoch + 1 and resumes at it
    epoch_resumed=lambda saved: saved,
    saves_eiters=False,
)


train = recipe_train(IMRAM_RECIPE, TRAIN_DEFAULTS, "IMRAM")
