"""The collectives of a sharded evaluation: one process group's all_reduce / all_gather / broadcast.

ShardCollectives moves CUDA tensors over NCCL and CPU tensors over gloo (moving a tensor when the
group lacks its kind), gathers ragged per-rank rows in bounded chunks, and turns one rank's failure
into an error on every rank instead of a hang. evaluator.sharded.Sharding adds the evaluation.
This module imports torch only inside functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fico_registry.errors import ConfigError, FicoError
from fico_registry.runtime.distributed import RankFailedError

_GATHER_CHUNK_BYTES = 64 << 20  # one all_gather moves at most this much per rank


class ShardCollectives:
    """Collectives and per-rank bookkeeping of one sharded evaluation."""

    def __init__(self, dist: Any) -> None:
        self.dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.backend = str(dist.get_backend())
        self.modes: dict[str, str] = {}
        self.timings: dict[str, float] = {}  # this rank's seconds per stage
        self.resident: dict[str, int] | None = None  # rows of each side this rank holds, when sharded

    # -- collectives: CUDA tensors over NCCL, CPU tensors over gloo, moved when the group lacks one --
    def _comm_device(self, tensor: Any):  # -> torch.device
        import torch

        if tensor.is_cuda and "nccl" in self.backend:
            return tensor.device
        if "gloo" in self.backend:
            return torch.device("cpu")
        return torch.device("cuda", torch.cuda.current_device())

    def all_reduce(self, tensor: Any, op: str = "sum", group: Any = None) -> Any:
        dist = self.dist
        work = tensor.to(self._comm_device(tensor)).contiguous()
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(work, op=ops[op], group=group)
        return work.to(tensor.device)

    def all_gather(self, tensor: Any, group: Any = None) -> Any:
        """(world_size, *shape) from every rank's same-shaped tensor."""
        import torch

        work = tensor.to(self._comm_device(tensor)).contiguous()
        out = [torch.empty_like(work) for _ in range(self.world_size)]
        self.dist.all_gather(out, work, group=group)
        return torch.stack(out).to(tensor.device)

    def all_gather_object(self, value: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        self.dist.all_gather_object(out, value)
        return out

    def broadcast(self, tensor: Any, src: int) -> Any:
        """`tensor` of rank `src` on every rank (the others pass a buffer of the same shape and dtype)."""
        work = tensor.to(self._comm_device(tensor)).contiguous()
        self.dist.broadcast(work, src=src)
        return work.to(tensor.device)

    def gather_rows(self, local: Any, counts: Sequence[int]) -> Any:
        """Concatenate every rank's rows (rank r holds counts[r] rows); tensor or numpy in, same out."""
        import torch

        as_numpy = isinstance(local, np.ndarray)
        tensor = torch.from_numpy(np.ascontiguousarray(local)) if as_numpy else local
        original = tensor.dtype
        if original == torch.bool:
            tensor = tensor.to(torch.uint8)
        elif original == torch.bfloat16:  # moved as its bit pattern: not every backend reduces bf16
            tensor = tensor.view(torch.int16)
        widest = max(counts)
        row_bytes = max(1, tensor[:1].numel() * tensor.element_size())
        chunk = max(1, _GATHER_CHUNK_BYTES // row_bytes)
        pieces: list[list[Any]] = [[] for _ in range(self.world_size)]
        for start in range(0, widest, chunk):
            stop = min(widest, start + chunk)
            part = tensor[start:stop]
            if part.shape[0] < stop - start:  # pad short shards to a common shape
                pad = part.new_zeros((stop - start - part.shape[0], *tensor.shape[1:]))
                part = torch.cat([part, pad])
            gathered = self.all_gather(part).cpu()
            for r in range(self.world_size):
                keep = max(0, min(stop, counts[r]) - start)
                pieces[r].append(gathered[r, :keep])
        out = torch.cat([p for rank_pieces in pieces for p in rank_pieces]) if widest else tensor[:0].cpu()
        if original == torch.bool:
            out = out.to(torch.bool)
        elif original == torch.bfloat16:
            out = out.view(torch.bfloat16)
        return out.numpy() if as_numpy else out

    def raise_if_any_failed(self, error: BaseException | None) -> None:
        """Collective: if any rank failed, every rank raises (the failing one its own error)."""
        import torch

        flag = self.all_reduce(torch.tensor([0 if error is None else 1], dtype=torch.int64))
        if int(flag.item()) == 0:
            return
        # names, not classes: a class that does not pickle must not stop the exchange
        mine = None if error is None else (type(error).__module__, type(error).__qualname__, str(error))
        reports = self.all_gather_object(mine)
        if error is not None:
            raise error
        r, (module, qualname, message) = next((r, rep) for r, rep in enumerate(reports) if rep is not None)
        text = f"rank {r} failed with {qualname}: {message}"
        kind = _find_class(module, qualname)
        try:
            remote = kind(text) if isinstance(kind, type) and issubclass(kind, FicoError) else None
        except Exception:
            remote = None
        raise remote if remote is not None else RankFailedError(text)

    def check_same_call(self, signature: dict[str, Any]) -> None:
        """Every rank must evaluate the same task; a mismatch would otherwise hang or mix data."""
        signatures = self.all_gather_object(signature)
        for r, other in enumerate(signatures):
            if other != signature:
                raise ConfigError(
                    f"rank {self.rank} and rank {r} called the evaluator with different inputs or options "
                    f"({signature} vs {other}); every rank must pass the same arrays and options, or wrap a "
                    "single-rank call in `with fico_registry.runtime.distributed.local():`"
                )


def _find_class(module: str, qualname: str) -> Any:
    import importlib

    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found
