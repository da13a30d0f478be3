"""Distributed training under ``torchrun``: the process group, rank roles, barriers and the DDP wrapper.

Launch: ``torchrun --nproc_per_node=N -m harness reproduce RECIPE`` (or ``reprosr reproduce RECIPE --nproc
N``). Every rank trains on its ``1/N`` share of each global batch; rank 0 alone validates, writes files and
the results store; ranks wait at :func:`barrier` wherever they read what rank 0 wrote.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

TIMEOUT = timedelta(hours=2)


def init(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group (NCCL on CUDA, gloo on CPU) when launched so."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        # rank 0 evaluates alone at the end of each run while the others wait: allow for long evaluations
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def rank() -> int:
    """This process's rank: the process group's, else torchrun's ``RANK``, else 0."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def mean(t: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of ``t`` over the ranks (in place on a copy); ``t`` itself when alone."""
    if not dist.is_initialized():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def broadcast_float(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return t.item()


def gather(obj: object) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not dist.is_initialized():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def unused_parameters(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of trainable parameters that get no gradient from one forward/backward of ``example``.

    Run under ``torch.random.fork_rng`` so that the probe leaves the training RNG streams untouched; the
    gradients it makes are cleared.
    """
    devices = [example.device.index] if example.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model(example).float().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return unused


def wrap(model: nn.Module, device: torch.device, example: torch.Tensor) -> nn.Module:
    """``model`` itself when alone, else DDP; ``find_unused_parameters`` only where a parameter is unused
    (HSPAN), since the search costs a graph traversal per iteration."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return model
    unused = unused_parameters(model, example)
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=bool(unused),
    )
