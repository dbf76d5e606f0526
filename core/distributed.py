"""Data-parallel training across the processes that torchrun starts: one per GPU, or CPU ones.

Each process trains on its share of every batch and the gradients are averaged before each
optimizer step, so all processes keep the same model. Validation and test run on rank 0,
which sends its metrics to the others so that every process makes the same early-stopping
choice. Outside torchrun (WORLD_SIZE unset or 1) none of this is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a process group of more than one process."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join_torchrun_group(device_name: str) -> DataParallel | None:
    """Join the process group that torchrun describes in the environment; None outside torchrun.

    WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from torchrun. A process
    that trains on CUDA uses the GPU of its LOCAL_RANK and the NCCL backend; CPU processes use
    gloo. An already initialised group is reused.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None

    if not dist.is_initialized():
        # NOTE: tests run only the gloo (CPU) path. The NCCL path needs a multi-GPU host.
        on_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
        if on_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if on_cuda else "gloo")
    return DataParallel(rank=dist.get_rank(), world_size=dist.get_world_size())


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process."""
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


def average_gradients(model: torch.nn.Module) -> None:
    """Replace every parameter's gradient with its mean over the processes, in one all-reduce."""
    parameters = [parameter for parameter in model.parameters() if parameter.grad is not None]
    if not parameters:
        return
    flat = torch.cat([parameter.grad.reshape(-1) for parameter in parameters])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()

    offset = 0
    for parameter in parameters:
        size = parameter.grad.numel()
        parameter.grad.copy_(flat[offset : offset + size].view_as(parameter.grad))
        offset += size


def broadcast_from_main(value):
    """Return rank 0's value of a picklable object on every process."""
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def sum_over_processes(*values: float) -> list[float]:
    """Return the sum of each value over all processes, in one all-reduce."""
    totals = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        totals = totals.cuda()
    dist.all_reduce(totals)
    return totals.tolist()
