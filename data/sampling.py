"""A resumable, shardable data order whose randomness depends only on (seed, epoch, position).

Training must continue bit for bit after a resume in the middle of an epoch, on any number of
DataLoader workers. So the order of an epoch is a permutation drawn from (seed, epoch), and each
sample is loaded under its own seed, drawn from (seed, epoch, position): the random crop and flip of
a sample never depend on which worker loads it or on what came before, and loading it touches no
global generator.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant to spread (seed, epoch, position) over seeds


def _mixed_seed(*values: int) -> int:
    h = 0
    for v in values:
        h = (h * _MIX + v + 1) % (1 << 63)
    return h


class EpochSampler(Sampler):
    """Yields ``(index, sample_seed)`` for one epoch; call :meth:`set_epoch` before each epoch.

    The epoch's order is a random permutation of ``range(size)`` (or the identity with
    ``shuffle=False``), padded by wrapping to a multiple of ``world_size`` and split among ranks
    ``rank::world_size`` like ``DistributedSampler``. ``start`` skips the first positions of this
    rank's share (to resume mid-epoch).
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.size, self.seed, self.rank, self.world_size, self.shuffle = size, seed, rank, world_size, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def per_rank(self) -> int:
        """Samples per rank in one epoch (steps per epoch at batch size 1)."""
        return -(-self.size // self.world_size)

    def order(self) -> list[int]:
        """This rank's indices for the current epoch, from position 0."""
        if self.shuffle:
            g = torch.Generator().manual_seed(_mixed_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank() * self.world_size
        order = (order * (total // len(order) + 1))[:total]
        return order[self.rank::self.world_size]

    def __iter__(self):
        for position, index in enumerate(self.order()):
            if position >= self.start:
                yield index, _mixed_seed(self.seed, self.epoch, position * self.world_size + self.rank)

    def __len__(self) -> int:
        return max(0, self.per_rank() - self.start)


class SeededSamples(Dataset):
    """Loads ``dataset.sample(index, generator)`` with a generator of its own seeded with ``sample_seed``.

    Keys are the ``(index, sample_seed)`` pairs of :class:`EpochSampler`; the dataset draws all of a
    sample's randomness from the generator it is given. No global generator is read or reseeded, so
    loading in the training process (``num_workers=0``) leaves the CPU and CUDA streams (dropout)
    exactly as they were: ``torch.manual_seed`` there would reset every CUDA generator at each sample.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, sample_seed = key
        return self.dataset.sample(index, generator=torch.Generator().manual_seed(sample_seed))
