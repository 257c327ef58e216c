"""Multi-process training helpers: process-group setup under ``torchrun`` and a resumable sampler.

``torchrun --nproc_per_node=N`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init_distributed`
joins the group (gloo on CPU, nccl on CUDA). Without those variables everything runs as one
process and the helpers are no-ops.

:class:`EpochSampler` replaces ``DistributedSampler`` so that the data order is a pure function of
``(seed, epoch)``: every rank shuffles the same permutation and takes its own slice, each item
comes with a per-item seed (for random crops) derived from ``(seed, epoch, index)``, and an epoch
can be entered at any batch (resume). The dataset receives ``(index, item_seed)`` pairs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from ssamba.data.seeding import item_seed
from ssamba.errors import ConfigError, DataError


@dataclass
class DistInfo:
    """Where this process sits: rank, world size, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's local GPU) when available, else CPU; or an explicit device string."""
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the torchrun process group when launched by torchrun; otherwise a single-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if world <= 1:
        return DistInfo(device=device)
    created = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        created = True
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                    device=device, initialized_here=created)


def per_process_batch(batch_size: int, world_size: int, global_batch: bool) -> int:
    """Clips per process and micro-batch: ``batch_size`` itself, or (``global_batch``) its share of
    a batch summed over ``world_size`` processes; a global batch that does not divide raises."""
    if not global_batch:
        return batch_size
    if batch_size % world_size:
        raise ConfigError(f"train.batch_size={batch_size}: a global batch (train.global_batch=true) must divide "
                          f"by the {world_size} processes (use a multiple of {world_size})")
    return batch_size // world_size


def shutdown(info: DistInfo) -> None:
    """Leave the process group if this module created it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``values`` over ranks (returns ``values`` unchanged in a single process)."""
    if not info.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / info.world_size


def all_agree(flag: bool, info: DistInfo) -> bool:
    """True only if ``flag`` is true on every rank (used to stop together when one rank runs dry)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def gather_objects(obj, info: DistInfo) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


class EpochSampler(torch.utils.data.Sampler):
    """Deterministic, resumable, rank-sharded sampler yielding ``(index, item_seed)`` pairs.

    Each epoch uses a permutation seeded by ``(seed, epoch)``; the tail that does not fill a whole
    batch on every rank is dropped so all ranks run the same number of steps.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True) -> None:
        per_step = batch_size * world_size
        if num_items < per_step:
            raise DataError(f"dataset has {num_items} clips, fewer than one batch "
                            f"(batch_size {batch_size} x {world_size} processes)")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.epoch, self.start_batch = 0, 0
        self.batches_per_epoch = num_items // per_step

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch and the batch (within it, for this rank) to start from."""
        self.epoch, self.start_batch = epoch, start_batch

    def _rank_indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        usable = self.batches_per_epoch * self.batch_size * self.world_size
        return order[:usable][self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        mine = self._rank_indices()[self.start_batch * self.batch_size:]
        for index in mine:
            yield index, item_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return max(0, (self.batches_per_epoch - self.start_batch) * self.batch_size)
