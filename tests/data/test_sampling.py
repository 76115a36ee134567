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

    def sample(self, index, generator):
        return torch.rand((), generator=generator).item()


def test_samples_depend_on_their_seed_only_and_leave_the_callers_rng_alone():
    data = SeededSamples(RandomItems())
    torch.manual_seed(0)
    random.seed(0)
    expected_torch, expected_python = torch.rand(()), random.random()
    torch.manual_seed(0)
    random.seed(0)
    first = data[(1, 123)]
    assert data[(2, 123)] == first and data[(1, 124)] != first
    assert first == torch.rand((), generator=torch.Generator().manual_seed(123)).item()
    assert torch.rand(()) == expected_torch and random.random() == expected_python


def test_loading_a_sample_never_reseeds_any_generator(synthetic_root, monkeypatch):
    """With --num-workers 0 samples load in the training process: reseeding torch there would reset the
    CUDA generators (dropout) at every sample. A sample's crop and flip come from its own generator."""
    from data.aligned import AlignedDataset

    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: seeded.append(seed))
    dataset = AlignedDataset(synthetic_root, "train", load_size=72, crop_size=64)
    samples = SeededSamples(dataset)
    torch.manual_seed(5)
    seeded.clear()
    state = torch.get_rng_state()
    items = [samples[(i, 1000 + i)] for i in range(len(dataset))]
    assert seeded == [], "loading a sample reseeded the CUDA generators"
    assert torch.equal(torch.get_rng_state(), state)
    again = [samples[(i, 1000 + i)] for i in range(len(dataset))]
    assert all(torch.equal(a["input"], b["input"]) for a, b in zip(items, again))
    crops = {tuple(samples[(0, seed)]["input"][0, :2, :2].flatten().tolist()) for seed in range(8)}
    assert len(crops) > 1  # the seed does choose the crop


def test_batches_do_not_depend_on_the_number_of_workers(synthetic_root):
    from data.aligned import AlignedDataset

    dataset = SeededSamples(AlignedDataset(synthetic_root, "train", load_size=72, crop_size=64))

    def batches(workers):
        sampler = EpochSampler(len(dataset), seed=3)
        sampler.set_epoch(1)
        loader = torch.utils.data.DataLoader(dataset, sampler=sampler, num_workers=workers)
        return [batch["input"] for batch in loader]

    assert all(torch.equal(a, b) for a, b in zip(batches(0), batches(2)))
