"""What training under torchrun (DistributedDataParallel) needs beyond DDP itself.

- :func:`launch_environment`, :func:`init_from_environment` and :func:`leave`: the process group of a
  torchrun process (its device decided before, from the command line alone: common.device.decide_device);
- :func:`is_main_process`: whether this process does the work only one does (files, logs, messages);
- :func:`wrap_ddp`: DistributedDataParallel, with or without the buffer broadcast before each forward;
- :func:`local_copy`: a copy of a network that computes on this rank alone (no SyncBatchNorm
  collectives), for work only one rank does, such as sample images;
- :func:`flags_of_all_ranks`, :func:`ranks_where`, :func:`any_rank` and :func:`nonfinite_ranks`: decisions
  every rank takes together (one all-reduce), so that when one rank must stop, all stop at the same step
  with the same message instead of the others waiting forever at their next collective;
- :func:`gather`: one picklable value from every rank (e.g. each rank's RNG state for a checkpoint).

Without an initialized process group every function works for a single process.
"""
from __future__ import annotations

import copy
import inspect
import os

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """Rank 0, or the only process."""
    return not is_distributed() or dist.get_rank() == 0


def launch_environment() -> tuple[int, int]:
    """(world_size, local_rank) torchrun gave this process ((1, 0) when not under torchrun); no process
    group is touched, so the device can be decided before one is made."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def init_from_environment(device: torch.device) -> tuple[int, int]:
    """(rank, world_size) of this process; under torchrun (WORLD_SIZE > 1) the process group is initialised
    for ``device``, this process's device (already decided): NCCL on its GPU when it is CUDA, gloo otherwise."""
    world_size, _ = launch_environment()
    if world_size == 1:
        return 0, 1
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size


def leave(modules: list[nn.Module]) -> None:
    """Every rank takes rank 0's buffers of ``modules`` (batch-norm statistics: the saved ones), then the
    process group is left."""
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
    dist.barrier()
    dist.destroy_process_group()


def wrap_ddp(module: nn.Module, device: torch.device, sync_buffers_each_forward: bool = True) -> nn.Module:
    """``module`` in DistributedDataParallel on ``device``. Without ``sync_buffers_each_forward`` its
    buffers are not broadcast from rank 0 before every forward (the option is ``forward_sync_buffers``
    from torch 2.14 on, ``broadcast_buffers`` before)."""
    options = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in options else "broadcast_buffers"
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, **{key: sync_buffers_each_forward})


def local_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose SyncBatchNorm layers are plain BatchNorm2d with the same weights
    and statistics: in training mode it normalises by this rank's batch and communicates with no one."""
    module = copy.deepcopy(module)
    return _without_sync_batchnorm(module)


def _without_sync_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.SyncBatchNorm):
        plain = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats, device=_device_of(module))
        plain.load_state_dict(module.state_dict())
        plain.train(module.training)
        return plain
    for name, child in module.named_children():
        module.add_module(name, _without_sync_batchnorm(child))
    return module


def _device_of(module: nn.Module) -> torch.device | None:
    tensor = next(iter(module.state_dict().values()), None)
    return tensor.device if tensor is not None else None


def flags_of_all_ranks(flags: torch.Tensor) -> torch.Tensor:
    """Every rank's boolean ``flags`` [n] as a [world_size, n] tensor, the same on all ranks.

    A collective: every rank must call it at the same point. ``flags`` lives on the training device
    (NCCL needs CUDA tensors).
    """
    flags = flags.reshape(-1)
    if not is_distributed():
        return flags[None].bool()
    table = torch.zeros(dist.get_world_size(), flags.numel(), dtype=torch.int32, device=flags.device)
    table[dist.get_rank()] = flags.int()
    dist.all_reduce(table)
    return table.bool()


def any_rank(flag: bool | torch.Tensor, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank (a collective, see :func:`flags_of_all_ranks`)."""
    return bool(flags_of_all_ranks(torch.as_tensor(flag, device=device).reshape(1)).any())


def ranks_where(flags: dict[str, bool | torch.Tensor], device: torch.device) -> dict[str, list[int]]:
    """For each named flag (a bool, or a one-element tensor, of this rank), the ranks where it is true:
    the same answer on every rank, from one all-reduce of all flags together (no collective without a
    process group). The only host read is of the agreed table."""
    if not flags:
        return {}
    values = torch.stack([torch.as_tensor(f, device=device).reshape(()).bool() for f in flags.values()])
    table = flags_of_all_ranks(values).cpu()
    return {name: [int(r) for r in table[:, i].nonzero().flatten()] for i, name in enumerate(flags)}


def nonfinite_ranks(values: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """For each named tensor that is not finite on some rank, the ranks where it is not (the same
    answer on every rank; a collective, see :func:`flags_of_all_ranks`)."""
    if not values:
        return {}
    flags = torch.stack([~torch.isfinite(v.detach()).all() for v in values.values()])
    table = flags_of_all_ranks(flags).cpu()
    return {name: [int(r) for r in table[:, i].nonzero().flatten()]
            for i, name in enumerate(values) if table[:, i].any()}


def gather(value) -> list:
    """``value`` (picklable) of every rank, in rank order, on every rank (a collective)."""
    if not is_distributed():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values
