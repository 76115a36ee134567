"""common/distributed.py: a sample copy that never communicates, and decisions all ranks take together."""
import pytest
import torch
import torch.distributed as dist

from common import distributed
from gan.networks import build_generator
from training.monitor import sample_grid


def pretend_two_ranks(monkeypatch):
    """A process group of two as SyncBatchNorm sees it; any collective it starts is recorded and fails
    (on a GPU it would wait forever for the rank that does not take part)."""
    collectives = []

    def collective(*args, **kwargs):
        collectives.append("sync_batch_norm")
        raise RuntimeError("collective started on one rank")

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch._C, "_get_privateuse1_backend_name", lambda: "cpu")  # let CPU tensors through
    monkeypatch.setattr(torch.nn.modules.batchnorm.sync_batch_norm, "apply", collective)
    return collectives


@pytest.mark.filterwarnings("ignore:Set seed for `cpu` device")  # the stand-in backend name above
def test_sample_grid_under_syncbatch_communicates_with_no_one(monkeypatch):
    """train.py draws sample images on rank 0 only: the copy of G it uses must not run SyncBatchNorm."""
    torch.manual_seed(0)
    plain = build_generator("unet_32", ngf=8)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build_generator("unet_32", ngf=8))
    synced.load_state_dict(plain.state_dict())
    frames = {"input": torch.rand(2, 3, 32, 32) * 2 - 1, "target": torch.rand(2, 3, 32, 32) * 2 - 1}
    expected = sample_grid(plain, frames, seed=1)
    collectives = pretend_two_ranks(monkeypatch)
    grid = sample_grid(synced, frames, seed=1)
    assert collectives == []
    assert torch.equal(grid, expected)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())  # the model itself is untouched


def test_local_copy_keeps_weights_statistics_and_mode():
    torch.manual_seed(0)
    net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build_generator("unet_32", ngf=8))
    for m in net.modules():
        if isinstance(m, torch.nn.SyncBatchNorm):
            m.running_mean.uniform_()
    copy = distributed.local_copy(net.eval())
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in copy.modules())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), copy.state_dict().values()))
    assert not copy.training
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(copy(x), net(x))


def test_single_process_answers_without_a_process_group():
    assert distributed.nonfinite_ranks({"a": torch.tensor(1.0), "b": torch.tensor(float("nan"))}) == {"b": [0]}
    assert distributed.any_rank(False, torch.device("cpu")) is False
    assert distributed.gather({"x": 1}) == [{"x": 1}]


def test_ranks_where_answers_every_flag_from_one_table(monkeypatch):
    cpu = torch.device("cpu")
    flags = {"stop": True, "finite": False, "nan": ~torch.isfinite(torch.tensor(float("nan")))}
    assert distributed.ranks_where(flags, cpu) == {"stop": [0], "finite": [], "nan": [0]}
    assert distributed.ranks_where({}, cpu) == {}
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.launch_environment() == (4, 3)
