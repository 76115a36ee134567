"""A fixed thread count per process: pinned, recorded in options.json, kept by a resumed run."""
import json

import pytest
import torch

import train
from common.threads import pin_threads, thread_env

TINY = ["--netG", "unet_32", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32", "--n-epochs", "1",
        "--n-epochs-decay", "1", "--num-workers", "0", "--max-steps", "2"]


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


def test_pin_threads_and_the_child_environment(restore_threads):
    assert pin_threads(0) == pin_threads(None) == restore_threads  # 0: torch's choice, unchanged
    assert pin_threads(1) == 1 and torch.get_num_threads() == 1
    assert thread_env(3) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}


def test_train_records_the_threads_and_a_resume_keeps_them(synthetic_root, tmp_path, restore_threads, capsys):
    common = [*TINY, "--dataroot", str(synthetic_root), "--checkpoints-dir", str(tmp_path)]
    assert train.main([*common, "--name", "pinned", "--threads", "1"]) == 0
    assert json.loads((tmp_path / "pinned" / "options.json").read_text())["threads"] == 1
    torch.set_num_threads(restore_threads)
    assert train.main([*common, "--name", "default"]) == 0  # 0: torch's choice, recorded as the count used
    assert json.loads((tmp_path / "default" / "options.json").read_text())["threads"] == restore_threads
    capsys.readouterr()
    # The count can change the last bits of a run: a resume with another one is refused (one line, exit 2).
    assert train.main([*common, "--name", "pinned", "--threads", "2", "--resume", "--max-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads 2 (the run has 1)" in err
    assert train.main([*common, "--name", "bad", "--threads", "-1"]) == 2
    assert "--threads must be >= 0, got -1" in capsys.readouterr().err
