"""common/amp.py: one meaning of --amp (bf16 autocast where the device has bf16) for training and scoring."""
import torch

from common.amp import amp_dtype, autocast


def test_bf16_where_the_device_has_it(monkeypatch):
    assert amp_dtype(torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert amp_dtype(torch.device("cuda", 0)) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert amp_dtype(torch.device("cuda", 0)) is None  # emulated bf16 (pre-Ampere GPUs) is slow: no autocast


def test_autocast_switches_matmuls_to_bf16_only_when_asked():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(torch.device("cpu"), enabled=True):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), enabled=False):
        assert (a @ b).dtype == torch.float32
