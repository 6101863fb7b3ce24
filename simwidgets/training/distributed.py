"""Data-parallel training under ``torchrun``: the same ``train`` on N processes.

``torchrun --nproc_per_node=N -m simwidgets train ...`` starts N copies of the command with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set; :func:`context` reads them, joins the
process group (gloo on CPU, nccl on CUDA, one GPU per process) and says which rank this
is.  Each rank draws its own pairs; DistributedDataParallel averages the gradients, so
all ranks hold the same weights after every step; rank 0 alone validates and writes files.
Outside ``torchrun`` everything here is a no-op (world size 1).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Context", "context", "broadcast", "all_sum", "barrier", "sync_buffers"]


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world`` processes, on ``device``."""

    rank: int
    world: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: validates, logs and writes the checkpoints."""
        return self.rank == 0


def context(device: torch.device) -> Context:
    """The process group of a ``torchrun`` launch (joined on first call), else a
    single-process context on ``device``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), device)


def broadcast(value, ctx: Context):
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not ctx.distributed:
        return value
    box = [value if ctx.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(value: float, ctx: Context) -> float:
    """The sum of ``value`` over all ranks."""
    if not ctx.distributed:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64,
                          device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return float(tensor.item())


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def sync_buffers(module: torch.nn.Module, ctx: Context) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank.

    DistributedDataParallel averages gradients, so parameters agree, and copies rank 0's
    buffers at the start of each forward; after the last forward every rank's statistics
    have moved on its own batch.  Copying them after each step keeps every rank's whole
    state identical (what validation, checkpoints and the next forward see).
    """
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
