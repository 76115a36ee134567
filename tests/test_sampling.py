"""data/sampling.py: epoch order from (seed, epoch), sharding, resuming mid-epoch, per-sample seeds."""
import random

import torch

from data.sampling import EpochSampler, SeededSamples


def test_order_is_a_permutation_that_changes_per_epoch_and_repeats_per_seed():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(0)
    first = [i for i, _ in sampler]
    sampler.set_epoch(1)
    second = [i for i, _ in sampler]
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    again = EpochSampler(10, seed=3)
    again.set_epoch(0)
    assert list(again) == list(EpochSampler(10, seed=3).__iter__()) and [i for i, _ in again] == first


def test_resume_skips_exactly_the_consumed_positions():
    whole = EpochSampler(9, seed=1)
    whole.set_epoch(4)
    resumed = EpochSampler(9, seed=1)
    resumed.set_epoch(4, start=5)
    assert list(resumed) == list(whole)[5:] and len(resumed) == 4


def test_ranks_split_the_epoch_like_distributed_sampler():
    shards = []
    for rank in range(3):
        sampler = EpochSampler(10, seed=0, rank=rank, world_size=3)
        sampler.set_epoch(2)
        shards.append([i for i, _ in sampler])
    assert all(len(s) == 4 for s in shards)  # padded to 12 by wrapping
    assert set().union(*map(set, shards)) == set(range(10))
    seeds = [s for rank in range(3) for _, s in EpochSampler(10, seed=0, rank=rank, world_size=3)]
    assert len(set(seeds)) == 12  # every position has its own sample seed


class RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.rand(()).item(), random.random()


def test_samples_depend_on_their_seed_only_and_leave_the_callers_rng_alone():
    data = SeededSamples(RandomItems())
    torch.manual_seed(0)
    random.seed(0)
    expected_torch, expected_python = torch.rand(()), random.random()
    torch.manual_seed(0)
    random.seed(0)
    first = data[(1, 123)]
    assert data[(2, 123)] == first and data[(1, 124)] != first
    assert torch.rand(()) == expected_torch and random.random() == expected_python
