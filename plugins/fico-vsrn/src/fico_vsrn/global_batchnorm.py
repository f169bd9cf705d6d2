"""Batch normalisation over the global batch of a torch.distributed job, on CPU (gloo) as on CUDA.

Under DistributedDataParallel each rank holds only its share of the batch. A plain BatchNorm
would normalise with that share's mean and variance, so activations, gradients and running
statistics would all differ from one process with the whole batch. torch.nn.SyncBatchNorm
fixes that but accepts GPU tensors only; this does the same on any device with two small
differentiable all-gathers per layer (per-channel sums, then per-channel squared deviations),
the same two-pass formula as torch's batch_norm, so a sharded run equals one process up to
float summation order.
"""

from __future__ import annotations

import torch
from torch import nn


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _summed_over_ranks(local: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of `local` (equal shapes), differentiable (backward sums the ranks' gradients)."""
    from fico_registry.training.common import all_gather_with_grad

    return all_gather_with_grad(local[None]).sum(dim=0)


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d whose training-mode statistics cover every rank's batch (same state-dict keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _distributed()):
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
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / max(count - 1.0, 1.0))
        self.running_mean.mul_(1.0 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1.0 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


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
