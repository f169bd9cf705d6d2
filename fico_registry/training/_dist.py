"""torch.distributed plumbing for `fico train` under torchrun (kept apart: imported only when used)."""

from __future__ import annotations

import os
from typing import Any


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_process_group(device: str) -> str:
    """Join the torchrun job; returns this rank's device ("cuda:LOCAL_RANK" when on CUDA)."""
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    elif device == "auto":
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
    return device


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def destroy() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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


def broadcast_object(value: Any) -> Any:
    """Rank 0's value on every rank (e.g. whether this epoch's model is the best)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
