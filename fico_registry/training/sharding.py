"""What the training recipes share to shard under torchrun: the checks, the DDP wrapping, the global
batch in its own order, and BatchNorm over the global batch.

Imported only by recipes while they train (torch at the top, unlike the rest of this package).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fico_registry.errors import ConfigError
from fico_registry.training._dist import all_gather_with_grad


# -- the job ------------------------------------------------------------------------------------------
def check_world(batch_size: int, world: int) -> None:
    """Under torchrun: a process group to talk through, and a global batch that splits evenly."""
    if world <= 1:
        return
    if not dist.is_initialized():
        raise ConfigError(
            f"WORLD_SIZE is {world} but no torch.distributed process group is initialised: launch "
            "`torchrun ... -m fico_registry train ...` (which joins it), or unset WORLD_SIZE"
        )
    if batch_size % world:
        raise ConfigError(f"batch_size {batch_size} (the global batch) must split evenly over {world} ranks")


def check_same_on_every_rank(arrays: tuple[np.ndarray, ...]) -> None:
    """Every rank trains on rank 0's features, or every rank stops (a divergent rank would desync DDP)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)  # no copy of a C-contiguous array
    digests: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) > 1:
        raise ConfigError(
            "the ranks computed different training features (rank digests differ): give every rank the same "
            "FICO_HOME, whose embedding cache rank 0 fills, or attach precomputed features to the corpora"
        )


@contextlib.contextmanager
def quiet(logger: str) -> Iterator[None]:
    """Only errors from `logger` (and its children) while inside (e.g. on the ranks that repeat rank 0's work)."""
    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)


# -- the step -----------------------------------------------------------------------------------------
def distributed(module: nn.Module, device: str, world: int) -> nn.Module:
    """What a training step calls: `module` itself, or wrapped in DistributedDataParallel under torchrun."""
    if world <= 1:
        return module
    ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def in_batch_order(part: torch.Tensor, world: int) -> torch.Tensor:
    """The global batch from every rank's share of it, rows in the batch's own order; gradients flow
    back to this rank's rows (all_gather_with_grad, which with DDP's averaging gives the gradient of
    one process holding the whole batch).

    `shard` deals a batch round-robin (rank r holds rows r, r + world, ...) and all_gather stacks the
    shares rank after rank: undoing that interleave lines the rows up with the batch's indices (memory
    entries, labels, per-sample state), as in one process.
    """
    if world <= 1:
        return part
    gathered = all_gather_with_grad(part.contiguous())
    return gathered.view(world, -1, *part.shape[1:]).transpose(0, 1).reshape(gathered.shape)


# -- BatchNorm over the global batch ------------------------------------------------------------------
# Under DistributedDataParallel each rank holds only its share of the batch. A plain BatchNorm would
# normalise with that share's mean and variance, so activations, gradients and running statistics would
# all differ from one process with the whole batch. torch.nn.SyncBatchNorm fixes that but accepts GPU
# tensors only; GlobalBatchNorm1d does the same on any device with two small differentiable all-gathers
# per layer (per-channel sums, then per-channel squared deviations), the same two-pass formula as
# torch's batch_norm, so a sharded run equals one process up to float summation order.
def _sharded() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _summed_over_ranks(local: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of `local` (equal shapes), differentiable (backward sums the ranks' gradients)."""
    return all_gather_with_grad(local[None]).sum(dim=0)


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d whose training-mode statistics cover every rank's batch, on (N, C) and (N, C, L)
    inputs; plain BatchNorm1d in eval mode or outside a multi-rank job. Same state-dict keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _sharded()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]  # every axis but the channels
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        x32 = x.float()
        local = torch.cat([x32.sum(dim=dims), x32.new_full((1,), x32.numel() // x32.shape[1])])
        total = _summed_over_ranks(local)
        count = float(total[-1].detach())
        mean = total[:-1] / count
        centred = x32 - mean.view(shape)
        var = _summed_over_ranks(centred.pow(2).sum(dim=dims)) / count
        self._track(mean.detach(), var.detach(), count)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        """Update the running statistics as nn.BatchNorm1d does (unbiased variance, momentum or cumulative)."""
        if not self.track_running_stats:
            return
        tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
        # nn.BatchNorm1d registers these three buffers whenever track_running_stats is set
        assert tracked is not None and running_mean is not None and running_var is not None
        tracked.add_(1)
        factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / max(count - 1.0, 1.0))
        running_mean.mul_(1.0 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
        running_var.mul_(1.0 - factor).add_(unbiased.to(running_var.dtype), alpha=factor)


def globalise_batchnorms(module: nn.Module) -> nn.Module:
    """Replace every nn.BatchNorm1d inside `module` by a GlobalBatchNorm1d holding the SAME parameters
    and buffers (so an optimizer built before or after sees the same tensors); returns `module`."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            setattr(module, name, _global_copy(child))
        else:
            globalise_batchnorms(child)
    return module


def _global_copy(bn: nn.BatchNorm1d) -> GlobalBatchNorm1d:
    twin = GlobalBatchNorm1d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    for name, param in bn.named_parameters(recurse=False):
        setattr(twin, name, param)
    for name, buffer in bn.named_buffers(recurse=False):
        setattr(twin, name, buffer)
    return twin.train(bn.training)
