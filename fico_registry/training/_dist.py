"""The differentiable all_gather of `fico train` under torchrun (kept apart: imported only when used).

Joining and leaving the process group, barrier and broadcast_object live in fico_registry.runtime.distributed.
"""

from __future__ import annotations

from typing import Any


def all_gather_with_grad(tensor: Any) -> Any:
    """Every rank's `tensor` (equal shapes) concatenated in rank order, differentiable.

    Backward sums the ranks' gradients for this rank's part: with DDP's averaging this gives
    exactly the single-process gradient of a loss over the global batch.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor

    class _Gather(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, part: torch.Tensor) -> torch.Tensor:
            ctx.rows = part.shape[0]
            parts = [torch.empty_like(part) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, part.contiguous())
            return torch.cat(parts, dim=0)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            grad = grad.contiguous()
            dist.all_reduce(grad)
            start = dist.get_rank() * ctx.rows
            return grad[start : start + ctx.rows]

    return _Gather.apply(tensor)
