"""train.py: options, run folders, exact resume after SIGKILL, NaN stop, logging, torchrun on the CPU."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from gan.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = ["--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32",
        "--n-epochs", "2", "--n-epochs-decay", "2", "--num-workers", "0", "--log-freq", "2", "--image-freq", "4",
        "--num-image-frames", "2", "--optim", "tradam", "--inner-steps", "3"]


def tiny_args(root, ckpt, *extra):
    return ["--dataroot", str(root), "--checkpoints-dir", str(ckpt), *TINY, *extra]


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def assert_same_state(a: dict, b: dict):
    for key in ("netG", "netD"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    for key in ("optimizer_G", "optimizer_D"):
        for index, state in a[key]["state"].items():
            for name, value in state.items():
                other = b[key]["state"][index][name]
                assert torch.equal(value, other) if torch.is_tensor(value) else value == other, f"{key} {name}"


def test_lr_factor_decays_linearly_to_a_small_nonzero_value():
    assert train.lr_factor(0, 100, 100) == 1.0
    assert train.lr_factor(99, 100, 100) == 1.0
    assert train.lr_factor(100, 100, 100) == pytest.approx(1 - 1 / 101)
    assert train.lr_factor(199, 100, 100) == pytest.approx(1 / 101)
    assert train.lr_factor(199, 100, 100) > 0


@pytest.mark.parametrize("extra,message", [
    (["--netG", "unet_999"], "unet_999"),
    (["--crop-size", "64", "--load-size", "36"], "larger than --load-size"),
    (["--netG", "unet_64"], "multiples of 64"),
    (["--dataroot", "/nonexistent/cityscapes"], "/nonexistent/cityscapes"),
    (["--inner-steps", "0"], "--inner-steps"),
])
def test_bad_options_give_one_line_before_any_work(synthetic_root, tmp_path, capsys, extra, message):
    code = train.main(tiny_args(synthetic_root, tmp_path, *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written


def test_run_folder_is_never_overwritten_silently(synthetic_root, tmp_path, capsys):
    assert train.main(tiny_args(synthetic_root, tmp_path, "--max-steps", "2")) == 0
    latest = tmp_path / "tradam_seed0" / "latest.pt"
    before = latest.read_bytes()
    assert train.main(tiny_args(synthetic_root, tmp_path, "--max-steps", "2")) == 2
    assert "--resume" in capsys.readouterr().err
    assert latest.read_bytes() == before
    assert train.main(tiny_args(synthetic_root, tmp_path, "--max-steps", "3", "--resume")) == 0
    assert load_checkpoint(latest)["step"] == 3
    assert train.main(tiny_args(synthetic_root, tmp_path, "--max-steps", "1", "--overwrite")) == 0
    assert load_checkpoint(latest)["step"] == 1


def test_checkpoint_is_complete_and_logs_are_written(synthetic_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert train.main(tiny_args(synthetic_root, tmp_path)) == 0
    run = tmp_path / "tradam_seed0"
    state = load_checkpoint(run / "latest.pt", require_format=True)  # weights_only=True
    assert state["finished"] and state["step"] == 16 and state["epoch"] == 4
    for key in ("netG", "netD", "optimizer_G", "optimizer_D", "scheduler_G", "scheduler_D", "rng", "options",
                "netG_config"):
        assert key in state
    anchors = [s for s in state["optimizer_G"]["state"].values() if "anchor" in s]
    assert anchors, "TR anchors must be in the checkpoint"
    assert (run / "epoch_004.pt").is_file() and (run / "options.json").is_file()
    assert list((run / "samples").glob("*.png"))
    events = EventAccumulator(str(run / "events"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"G_GAN", "G_L1", "D_real", "D_fake", "lr", "anchor_distance_G", "anchor_distance_D", "grad_norm_G",
            "grad_norm_D", "step_time"} <= scalars
    assert events.Tags()["images"]
    lrs = [e.value for e in events.Scalars("lr")]
    assert lrs[0] == pytest.approx(2e-4) and lrs[-1] < lrs[0]


def test_sigkill_and_resume_is_bit_identical(synthetic_root, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # unet_64 has a dropout block, so the restored RNG state matters; 24 steps over 6 epochs.
    longer = ["--netG", "unet_64", "--load-size", "72", "--crop-size", "64", "--save-latest-freq", "1",
              "--n-epochs", "3", "--n-epochs-decay", "3"]
    assert train.main(tiny_args(synthetic_root, whole, *longer)) == 0

    args = tiny_args(synthetic_root, killed, *longer)
    process = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / "tradam_seed0" / "latest.pt"
    deadline = time.monotonic() + 240
    while not latest.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    time.sleep(0.1)  # a few steps in (the kill may land in a checkpoint write)
    process.send_signal(signal.SIGKILL)
    process.wait()
    step = load_checkpoint(latest)["step"]
    assert 0 < step < 24, "the kill should land in the middle of the run"
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    final = load_checkpoint(latest)
    assert final["step"] == 24 and final["finished"]
    assert_same_state(load_checkpoint(whole / "tradam_seed0" / "latest.pt"), final)


def test_nan_loss_stops_with_the_last_good_checkpoint(synthetic_root, tmp_path, capsys, monkeypatch):
    original = train.Pix2Pix.training_step
    calls = {"n": 0}

    def failing_step(self, *args, **kwargs):
        calls["n"] += 1
        losses = original(self, *args, **kwargs)
        if calls["n"] >= 5:
            losses["G_L1"] = torch.tensor(float("nan"))
        return losses

    monkeypatch.setattr(train.Pix2Pix, "training_step", failing_step)
    code = train.main(tiny_args(synthetic_root, tmp_path, "--save-latest-freq", "2"))
    err = capsys.readouterr().err
    assert code == 1 and "non-finite loss G_L1" in err
    state = load_checkpoint(tmp_path / "tradam_seed0" / "latest.pt")
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["netG"].values())


def test_cpu_switches_still_run(synthetic_root, tmp_path, capsys):
    code = train.main(tiny_args(synthetic_root, tmp_path, "--max-steps", "3", "--amp", "--channels-last",
                                "--device", "auto", "--norm", "syncbatch", "--num-workers", "1"))
    assert code == 0
    out = capsys.readouterr().out
    assert "--amp" in out and "syncbatch" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DDP_SCRIPT = """
import contextlib, os, sys, torch
sys.path.insert(0, {repo!r})
# DDP of torch 2.6 up to its upstream fix broadcasts buffers before every forward by an in-place copy that
# bumps their version counters; this torch preserves them. Undo that, to run as those releases do.
torch.autograd._unsafe_preserve_version_counter = lambda tensors: contextlib.nullcontext()
import train
rank = int(os.environ["RANK"])
{extra}
args = train.parse_args(sys.argv[1:])
model = train.train(args)
torch.save({{"G": model.netG.state_dict(), "D": model.netD.state_dict()}}, {out!r} + f"/rank{{rank}}.pt")
"""
DDP_TINY = ["--netG", "unet_64", "--load-size", "72", "--crop-size", "64", "--n-epochs", "1", "--n-epochs-decay",
            "1", "--save-epoch-freq", "1"]  # unet_64 has dropout: each rank's RNG stream matters


def torchrun(script, *args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), str(script), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def ddp_weights(folder):
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_torchrun_two_processes_hold_identical_weights_and_resume_exactly(synthetic_root, tmp_path):
    """Two gloo processes, batch norm in D (two forwards before one backward): all ranks end with the
    same weights, and a run resumed from the checkpoint of its first epoch ends where the whole run does,
    because every rank gets its own RNG stream back (dropout differs per rank)."""
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    for folder in (whole, resumed):
        folder.mkdir()
        (folder / "ddp_run.py").write_text(DDP_SCRIPT.format(repo=str(REPO), extra="", out=str(folder)))
    result = torchrun(whole / "ddp_run.py", *tiny_args(synthetic_root, whole / "runs", *DDP_TINY))
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = ddp_weights(whole)
    for net in ("G", "D"):
        for name in rank0[net]:
            assert torch.equal(rank0[net][name], rank1[net][name]), f"{net}.{name} differs between ranks"
    run = whole / "runs" / "tradam_seed0"
    final = load_checkpoint(run / "latest.pt")
    assert final["step"] == 4 and final["world_size"] == 2 and len(final["rng"]["ranks"]) == 2

    (resumed / "runs" / "tradam_seed0").mkdir(parents=True)
    shutil.copy(run / "epoch_001.pt", resumed / "runs" / "tradam_seed0" / "latest.pt")  # after step 2 of 4
    result = torchrun(resumed / "ddp_run.py", *tiny_args(synthetic_root, resumed / "runs", *DDP_TINY, "--resume"))
    assert result.returncode == 0, result.stderr[-3000:]
    for net in ("G", "D"):
        for name, value in rank0[net].items():
            assert torch.equal(ddp_weights(resumed)[0][net][name], value), f"{net}.{name}: resumed run differs"


def test_torchrun_divergence_on_one_rank_stops_every_rank(synthetic_root, tmp_path):
    """Rank 1's loss turns NaN: both ranks stop at the next check with the same one-line error and a
    non-zero exit, instead of rank 0 waiting forever at its next collective."""
    failing = (
        "original = train.Pix2Pix.training_step\n"
        "calls = [0]\n"
        "def training_step(self, *a, **k):\n"
        "    losses = original(self, *a, **k)\n"
        "    calls[0] += 1\n"
        "    if rank == 1 and calls[0] >= 3:\n"
        "        losses['G_L1'] = torch.tensor(float('nan'))\n"
        "    return losses\n"
        "train.Pix2Pix.training_step = training_step\n"
        f"sys.stderr = open({str(tmp_path)!r} + f'/rank{{rank}}.err', 'w')\n"
        "code = train.main(sys.argv[1:])\n"
        "sys.stderr.close()\n"
        f"open({str(tmp_path)!r} + f'/rank{{rank}}.code', 'w').write(str(code))\n"
        "sys.exit(code)\n"
    )
    script = tmp_path / "ddp_nan.py"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO), extra=failing, out=str(tmp_path)))
    try:
        result = torchrun(script, *tiny_args(synthetic_root, tmp_path / "runs", "--n-epochs", "3"), timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the ranks did not stop together (a rank waited for one that had left)")
    assert result.returncode != 0
    codes = [(tmp_path / f"rank{r}.code").read_text() if (tmp_path / f"rank{r}.code").exists() else None
             for r in (0, 1)]
    assert codes == ["1", "1"], f"exit codes of the ranks: {codes}"
    errors = [(tmp_path / f"rank{r}.err").read_text().splitlines() for r in (0, 1)]
    assert errors[0] == errors[1] and len(errors[0]) == 1, errors  # one line, the same on both ranks
    assert errors[0][0].startswith("error: ") and "non-finite loss G_L1 at step 4 (rank 1)" in errors[0][0]


def test_compile_runs_on_the_cpu(synthetic_root, tmp_path):
    result = run_cli(*tiny_args(synthetic_root, tmp_path, "--max-steps", "2", "--compile"))
    assert result.returncode == 0, result.stderr[-2000:]
    state = load_checkpoint(tmp_path / "tradam_seed0" / "latest.pt")
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["netG"].values())


def test_channels_last_never_uses_torchs_layout_blind_fused_kernels():
    """torch's fused CPU Adam mixes up elements when a parameter is channels_last and its gradient is
    not; with --channels-last the baseline optimizers must take torch's unfused path on the CPU. On CUDA
    the fused kernels check layouts themselves, so Adam keeps its fused kernel there (as TRAdam does)."""
    w = torch.randn(8, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    p = torch.nn.Parameter(w.clone(memory_format=torch.preserve_format))
    p.grad = torch.randn(8, 4, 3, 3)  # contiguous gradient of a channels_last parameter
    expected = w - 0.1 * torch.sign(p.grad)  # Adam's first step moves each weight by lr against its gradient
    for optim in ("adam", "sgd", "tradam", "trsgd"):
        args = train.parse_args(["--optim", optim, "--channels-last"])
        config = train.build_configs(args, torch.device("cpu"))[1]
        if optim == "adam":
            q = torch.nn.Parameter(w.clone(memory_format=torch.preserve_format))
            q.grad = p.grad.clone()
            from gan.pix2pix import build_optimizer
            config.lr = 0.1
            build_optimizer([q], config).step()
            torch.testing.assert_close(q.detach(), expected, rtol=1e-4, atol=1e-4)
        assert config.fused is (False if optim in ("adam", "sgd") else None)
        assert train.build_configs(args, torch.device("cuda", 0))[1].fused is None


def test_noise_probes_are_logged_and_leave_the_trajectory_unchanged(synthetic_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    short = ["--n-epochs", "1", "--n-epochs-decay", "1"]
    assert train.main(tiny_args(synthetic_root, tmp_path, *short, "--name", "plain")) == 0
    assert train.main(tiny_args(synthetic_root, tmp_path, *short, "--name", "probed", "--noise-freq", "3",
                                "--noise-probe", "3")) == 0
    assert_same_state(load_checkpoint(tmp_path / "plain" / "latest.pt"), load_checkpoint(tmp_path / "probed" / "latest.pt"))
    events = EventAccumulator(str(tmp_path / "probed" / "events"))
    events.Reload()
    for key in ("noise/variance", "noise/grad_ratio", "noise/direction_ratio", "noise/distance_to_anchor"):
        values = events.Scalars(key)
        assert [v.step for v in values] == [3, 6]
        assert all(v.value >= 0 for v in values)
    assert train.main(tiny_args(synthetic_root, tmp_path, "--noise-freq", "2", "--noise-probe", "1")) == 2
