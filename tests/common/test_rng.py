"""common/rng.py: each process saves and restores its own device generator, with a stand-in CUDA RNG API."""
import random

import torch

from common import rng


class FakeCudaRng:
    """torch.cuda's RNG functions for one process that sees ``visible`` GPUs (states are small tensors)."""

    def __init__(self, visible: int, process: int):
        self.states = [torch.tensor([process, device], dtype=torch.uint8) for device in range(visible)]

    def index(self, device) -> int:
        device = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
        index = device.index or 0
        if index >= len(self.states):
            raise IndexError(f"cuda:{index}: only {len(self.states)} GPUs are visible")
        return index

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(self.states))
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": self.states[self.index(device)].clone())
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in self.states])

        def set_state(state, device="cuda"):
            self.states[self.index(device)] = state.clone()

        monkeypatch.setattr(torch.cuda, "set_rng_state", set_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                            lambda states: [set_state(s, i) for i, s in enumerate(states)])
        monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_state)


def test_resume_where_fewer_gpus_are_visible(monkeypatch):
    """Saved by the rank on cuda:3 of a 4-GPU machine, resumed on a machine with one GPU."""
    big = FakeCudaRng(visible=4, process=7)
    big.install(monkeypatch)
    saved = rng.capture(torch.device("cuda", 3))
    small = FakeCudaRng(visible=1, process=9)
    small.install(monkeypatch)
    rng.restore(saved, torch.device("cuda", 0))
    assert torch.equal(small.states[0], torch.tensor([7, 3], dtype=torch.uint8))


def test_every_rank_gets_back_its_own_device_stream(monkeypatch):
    """Two ranks (processes) on cuda:0 and cuda:1 of one machine: each restores the stream it had."""
    processes = [FakeCudaRng(visible=2, process=rank) for rank in range(2)]
    saved = []
    for rank, process in enumerate(processes):
        process.install(monkeypatch)
        saved.append(rng.capture(torch.device("cuda", rank)))
    resumed = [FakeCudaRng(visible=2, process=10 + rank) for rank in range(2)]
    for rank, process in enumerate(resumed):
        process.install(monkeypatch)
        rng.restore(saved[rank], torch.device("cuda", rank))
    assert torch.equal(resumed[1].states[1], torch.tensor([1, 1], dtype=torch.uint8))  # rank 1's own stream
    assert torch.equal(resumed[0].states[0], torch.tensor([0, 0], dtype=torch.uint8))


def test_cpu_python_and_numpy_streams_continue():
    import numpy as np

    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    state = rng.capture(torch.device("cpu"))
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    rng.restore(state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    assert np.random.rand() == expected[2]
