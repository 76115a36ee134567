"""train.py: options, run folders, exact resume after SIGKILL and interrupts, divergence stop, locks, disk errors,
logging, torchrun on the CPU."""
import errno
import json
import os
import shlex
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
import training.run
from common.checkpoint import load_checkpoint
from common.files import file_sha256
from training.options import build_configs, parse_args
from training.schedule import lr_factor

REPO = Path(__file__).resolve().parents[1]
TINY = ["--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32",
        "--n-epochs", "2", "--n-epochs-decay", "2", "--num-workers", "0", "--log-freq", "2", "--image-freq", "4",
        "--num-image-frames", "2", "--optim", "tradam", "--inner-steps", "3"]


# unet_64 has a dropout block, so the restored RNG state matters; 24 steps over 6 epochs.
LONGER = ["--netG", "unet_64", "--load-size", "72", "--crop-size", "64", "--save-latest-freq", "1",
          "--n-epochs", "3", "--n-epochs-decay", "3"]
# train.main in a process of its own, with slow steps or slow checkpoint writes so that signals land where
# the test wants them; a file in $MARKS tells how far it got (step<n>: n steps done in this process;
# saving<n>: its n-th checkpoint write is half written).
DRIVER = """
import io, os, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
import torch
import train
marks, calls = Path(os.environ["MARKS"]), {{"step": 0, "save": 0}}
step_sleep, save_sleep = float(os.environ.get("STEP_SLEEP", 0)), float(os.environ.get("SAVE_SLEEP", 0))
real_step, real_save = train.Pix2Pix.training_step, torch.save

def slow_step(self, *args, **kwargs):
    losses = real_step(self, *args, **kwargs)
    calls["step"] += 1
    (marks / f"step{{calls['step']}}").touch()
    time.sleep(step_sleep)
    return losses

def slow_save(obj, f):
    calls["save"] += 1
    if calls["save"] == 1 or not save_sleep:
        return real_save(obj, f)
    buffer = io.BytesIO()
    real_save(obj, buffer)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    (marks / f"saving{{calls['save']}}").touch()
    time.sleep(save_sleep)
    f.write(data[len(data) // 2:])

train.Pix2Pix.training_step, torch.save = slow_step, slow_save
sys.exit(train.main(sys.argv[1:]))
""".format(repo=str(REPO))


def tiny_args(root, ckpt, *extra):
    return ["--dataroot", str(root), "--checkpoints-dir", str(ckpt), *TINY, *extra]


def start_driver(args, marks: Path, new_session=False, **env):
    marks.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", DRIVER, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=new_session,
                            env=dict(os.environ, MARKS=str(marks), **env))


def wait_for(path: Path, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before {path.name}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.01)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def uninterrupted(synthetic_root, tmp_path_factory):
    """The final checkpoint of the LONGER run, trained in one go."""
    ckpt = tmp_path_factory.mktemp("uninterrupted")
    assert train.main(tiny_args(synthetic_root, ckpt, *LONGER)) == 0
    return load_checkpoint(ckpt / "tradam_seed0" / "latest.pt")


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
    assert lr_factor(0, 100, 100) == 1.0
    assert lr_factor(99, 100, 100) == 1.0
    assert lr_factor(100, 100, 100) == pytest.approx(1 - 1 / 101)
    assert lr_factor(199, 100, 100) == pytest.approx(1 / 101)
    assert lr_factor(199, 100, 100) > 0


@pytest.mark.parametrize("extra,message", [
    (["--netG", "unet_999"], "unet_999"),
    (["--crop-size", "64", "--load-size", "36"], "larger than --load-size"),
    (["--netG", "unet_64"], "multiples of 64"),
    (["--dataroot", "/nonexistent/cityscapes"], "/nonexistent/cityscapes"),
    (["--inner-steps", "0"], "--inner-steps"),
    (["--ngf", "0"], "--ngf"),
    (["--ndf", "0"], "--ndf"),
    (["--num-workers", "-1"], "--num-workers"),
    (["--beta1", "2"], "--beta1"),
    (["--momentum", "-1"], "--momentum"),
    (["--device", "tpu"], "--device tpu"),
    (["--num-image-frames", "0"], "--num-image-frames"),
    (["--n-layers-D", "0"], "--n-layers-D"),
    (["--max-steps", "-5"], "--max-steps"),
    (["--n-epochs", "-5", "--n-epochs-decay", "10"], "--n-epochs must be >= 0"),
    (["--lambda-l1", "-100"], "--lambda-l1"),
    (["--lr", "nan"], "--lr"),
    (["--allow-change", "lr"], "--allow-change"),
    (["--keep-full", "-1"], "--keep-full must be >= 0"),
])
def test_bad_options_give_one_line_before_any_work(synthetic_root, tmp_path, capsys, extra, message):
    code = train.main(tiny_args(synthetic_root, tmp_path, *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_failure_before_training_leaves_no_run_folder(synthetic_root, tmp_path, capsys):
    data = shutil.copytree(synthetic_root, tmp_path / "data")
    frame = data / "val" / "0.jpg"
    good = frame.read_bytes()
    frame.write_bytes(good[: len(good) // 2])  # a truncated val image: read for the sample grid, before training
    ckpt = tmp_path / "ckpt"
    assert train.main(tiny_args(data, ckpt, "--max-steps", "1")) == 2
    assert str(frame) in one_line(capsys.readouterr().err)
    assert not (ckpt / "tradam_seed0").exists() and not list(ckpt.glob(".tradam_seed0*"))
    frame.write_bytes(good)
    assert train.main(tiny_args(data, ckpt, "--max-steps", "1")) == 0  # a plain rerun, no --overwrite needed


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


def test_sigkill_and_resume_is_bit_identical(synthetic_root, tmp_path, uninterrupted):
    killed = tmp_path / "killed"
    args = tiny_args(synthetic_root, killed, *LONGER)
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
    assert_same_state(uninterrupted, final)


@pytest.mark.parametrize("signum,whole_group,workers", [(signal.SIGTERM, False, "0"), (signal.SIGINT, True, "1")])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_is_bit_identical(
        synthetic_root, tmp_path, uninterrupted, signum, whole_group, workers):
    """SIGTERM to the trainer (a scheduler) or SIGINT to its process group with a loader worker (Ctrl-C)."""
    args = tiny_args(synthetic_root, tmp_path, *LONGER, "--num-workers", workers)
    process = start_driver(args, tmp_path / "marks", new_session=whole_group, STEP_SLEEP="0.3")
    wait_for(tmp_path / "marks" / "step5", process)  # step 5 is done, the process sleeps in it
    (os.killpg if whole_group else os.kill)(process.pid, signum)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 128 + signum
    latest = tmp_path / "tradam_seed0" / "latest.pt"
    saved = load_checkpoint(latest)["step"]
    assert 5 <= saved <= 6, "the step under way is finished, no further one begun"
    line = one_line(err)
    assert line.startswith(f"interrupted by {signal.Signals(signum).name} at step {saved}: {latest} holds it")
    assert line.endswith(f"python train.py --name tradam_seed0 --checkpoints-dir {tmp_path} --resume")

    assert train.main(args + ["--resume", "--num-workers", "0"]) == 0  # workers do not change the trajectory
    final = load_checkpoint(latest)
    assert final["step"] == 24 and final["finished"]
    assert_same_state(uninterrupted, final)


def test_a_signal_during_a_save_keeps_the_previous_checkpoint(synthetic_root, tmp_path):
    args = tiny_args(synthetic_root, tmp_path, "--save-latest-freq", "1")
    latest = tmp_path / "tradam_seed0" / "latest.pt"
    # A first signal in the middle of a write: the write completes, the run stops there.
    process = start_driver(args, tmp_path / "marks", SAVE_SLEEP="2")
    wait_for(tmp_path / "marks" / "saving2", process)  # the checkpoint of step 2 is half written
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 130
    assert one_line(err).startswith(f"interrupted by SIGINT at step 2: {latest} holds it")
    assert load_checkpoint(latest, require_format=True)["step"] == 2

    # A second signal in the middle of a write: the process ends at once, the previous checkpoint is kept.
    process = start_driver(args + ["--resume"], tmp_path / "marks2", SAVE_SLEEP="60")
    wait_for(tmp_path / "marks2" / "saving2", process)  # step 3 saved, the checkpoint of step 4 half written
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 143 and time.monotonic() - started < 30
    assert one_line(err) == (f"stopped at once by a second SIGTERM: the write of {latest} was abandoned, the "
                             f"previous latest.pt is intact; the last checkpoint is {latest} (step 3)")
    assert load_checkpoint(latest, require_format=True)["step"] == 3
    assert train.main(args + ["--resume", "--max-steps", "5"]) == 0  # and it continues from there
    assert load_checkpoint(latest)["step"] == 5
    assert sorted(p.name for p in latest.parent.glob(".latest.pt*")) == []  # the abandoned write is cleared


def test_one_process_writes_a_run_and_a_stale_lock_is_taken_over(synthetic_root, tmp_path, capsys):
    args = tiny_args(synthetic_root, tmp_path)
    assert train.main(args + ["--max-steps", "2"]) == 0
    capsys.readouterr()
    process = start_driver(args + ["--resume", "--max-steps", "0"], tmp_path / "marks", STEP_SLEEP="0.5")
    try:
        wait_for(tmp_path / "marks" / "step1", process)
        assert train.main(args + ["--resume", "--max-steps", "0"]) == 2
        assert f"in use by process {process.pid} on " in one_line(capsys.readouterr().err)
        assert train.main(args + ["--overwrite"]) == 2  # nor is a run in use replaced
        assert f"in use by process {process.pid}" in one_line(capsys.readouterr().err)
    finally:
        process.kill()  # SIGKILL: the lock file stays behind, naming a process that is gone
        process.wait()
    assert (tmp_path / "tradam_seed0" / ".lock").is_file()
    assert train.main(args + ["--resume", "--max-steps", "0"]) == 0
    assert load_checkpoint(tmp_path / "tradam_seed0" / "latest.pt")["step"] == 16


def test_diverged_weights_are_never_saved_and_the_advice_works(synthetic_root, tmp_path, capsys):
    """With --lr 1e10 the losses stay finite but batch-norm running variances overflow to inf."""
    run = tmp_path / "tradam_seed0"
    assert train.main(tiny_args(synthetic_root, tmp_path, "--lr", "1e10")) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {run}: training diverged at step 4 (non-finite values in netG.")
    assert "running_var" in line and "no checkpoint was written" in line and "latest.pt" not in line
    assert not (run / "latest.pt").exists() and not list(run.glob("epoch_*.pt"))

    assert train.main(tiny_args(synthetic_root, tmp_path, "--max-steps", "4", "--overwrite")) == 0
    good = load_checkpoint(run / "latest.pt")
    capsys.readouterr()
    assert train.main(tiny_args(synthetic_root, tmp_path, "--resume", "--max-steps", "0", "--lr", "1e10",
                                "--allow-change", "lr")) == 1
    line = one_line(capsys.readouterr().err)
    assert f"the last good checkpoint is {run / 'latest.pt'} (step 4)" in line
    assert_same_state(good, load_checkpoint(run / "latest.pt"))  # untouched

    advice = shlex.split(line.split("continue from it with a lower learning rate: ")[1])
    assert advice[:2] == ["python", "train.py"] and "--resume" in advice and "--lr" in advice
    assert train.main(advice[2:]) == 0  # exactly what the message says
    final = load_checkpoint(run / "latest.pt")
    assert final["finished"] and final["step"] == 16
    assert final["options"]["lr"] == 2e-5 and final["options"]["lr_changes"] == [[4, 2e-4, 2e-5]]
    assert all(torch.isfinite(v).all() for v in list(final["netG"].values()) + list(final["netD"].values()))


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
from training.options import parse_args
args = parse_args(sys.argv[1:])
model = train.train(args)
torch.save({{"G": model.netG.state_dict(), "D": model.netD.state_dict()}}, {out!r} + f"/rank{{rank}}.pt")
"""
DDP_TINY = ["--netG", "unet_64", "--load-size", "72", "--crop-size", "64", "--n-epochs", "1", "--n-epochs-decay",
            "1", "--save-epoch-freq", "1", "--keep-full", "2"]  # unet_64 has dropout: each rank's RNG stream matters


def torchrun(script, *args, timeout=240, env=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), str(script), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def ddp_weights(folder):
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.mark.slow
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
    shutil.copy(run / "full_001.pt", resumed / "runs" / "tradam_seed0" / "latest.pt")  # after step 2 of 4
    result = torchrun(resumed / "ddp_run.py", *tiny_args(synthetic_root, resumed / "runs", *DDP_TINY, "--resume"))
    assert result.returncode == 0, result.stderr[-3000:]
    for net in ("G", "D"):
        for name, value in rank0[net].items():
            assert torch.equal(ddp_weights(resumed)[0][net][name], value), f"{net}.{name}: resumed run differs"


# Counts every call of a torch.distributed collective (those of this project and those DDP makes from Python,
# such as its buffer broadcasts; DDP's gradient all-reduce runs in its C++ reducer and is not counted), and
# the count when each training step starts; a rank can send itself SIGTERM at one of its steps.
COUNTING = """
import atexit, json, signal
import torch.distributed as dist
calls, at_step = [0], []
for name in ("all_reduce", "broadcast", "all_gather", "all_gather_object", "all_gather_into_tensor", "barrier",
             "reduce", "gather", "scatter", "reduce_scatter_tensor", "broadcast_object_list", "_broadcast_coalesced"):
    def counted(*a, _real=getattr(dist, name), **k):
        calls[0] += 1
        return _real(*a, **k)
    setattr(dist, name, counted)
original = train.Pix2Pix.training_step
def training_step(self, *a, **k):
    at_step.append(calls[0])
    if rank == int(os.environ.get("SIGNAL_RANK", -1)) and len(at_step) == int(os.environ.get("SIGNAL_STEP", 0)):
        os.kill(os.getpid(), signal.SIGTERM)
    return original(self, *a, **k)
train.Pix2Pix.training_step = training_step
atexit.register(lambda: open({out!r} + f"/counts{{rank}}.json", "w").write(json.dumps(at_step + [calls[0]])))
"""


@pytest.fixture(scope="module")
def wider_root(tmp_path_factory):
    """24 training pairs at 32 px: 12 steps per epoch on each of two ranks."""
    from data.synthetic import generate
    return generate(tmp_path_factory.mktemp("wider"), n_train=24, n_val=2, seed=0, size=32)


@pytest.mark.slow
def test_torchrun_ranks_agree_once_per_log_interval_and_stop_after_the_same_step(wider_root, tmp_path):
    """Two gloo processes, 24 steps each over 2 epochs, --log-freq 6: the collectives issued between the first
    and the last step are the 4 agreements of the log steps and the save at the end of epoch 1 (its agreement
    and its gather of the RNG states): at most N / log_freq + 2 per epoch end, not one or more per step. A
    SIGTERM that reaches rank 1 alone at its 8th step stops both ranks after step 12, the next agreement."""
    script = tmp_path / "count.py"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO), extra=COUNTING.format(out=str(tmp_path)), out=str(tmp_path)))
    options = ["--dataroot", str(wider_root), "--checkpoints-dir", str(tmp_path / "runs"), *TINY, "--n-epochs", "1",
               "--n-epochs-decay", "1", "--log-freq", "6", "--image-freq", "1000", "--save-epoch-freq", "1"]
    result = torchrun(script, *options)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        counts = json.loads((tmp_path / f"counts{rank}.json").read_text())
        steps = len(counts) - 1
        assert steps == 24
        between = counts[steps - 1] - counts[0]  # from the start of step 1 to the start of step N
        assert between <= steps // 6 + 2, f"rank {rank}: {between} collectives over {steps} steps"

    result = torchrun(script, *options, "--name", "stopped", env={"SIGNAL_RANK": "1", "SIGNAL_STEP": "8"})
    assert result.returncode != 0
    for rank in (0, 1):
        assert len(json.loads((tmp_path / f"counts{rank}.json").read_text())) - 1 == 12, f"rank {rank}"
    assert load_checkpoint(tmp_path / "runs" / "stopped" / "latest.pt")["step"] == 12


@pytest.mark.slow
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
    assert errors[0][0].startswith("error: ") and "diverged at step 4 (non-finite loss G_L1 on rank 1)" in errors[0][0]


class PidSamples:
    """A dataset whose samples say which process loaded them, with a draw from their own generator."""

    def __len__(self):
        return 6

    def sample(self, index, generator):
        return {"index": index, "draw": torch.rand(1, generator=generator), "pid": os.getpid()}


def test_loader_workers_persist_across_epochs_with_the_same_samples_in_the_same_order():
    """make_loader with 2 workers: the same processes serve both epochs, and every batch equals the one
    loaded in the training process (0 workers), jitter included."""
    from data.sampling import EpochSampler

    def two_epochs(workers):
        sampler = EpochSampler(6, seed=3)
        loader = train.make_loader(PidSamples(), sampler, 2, workers, torch.device("cpu"))
        epochs = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            epochs.append(list(loader))
        return epochs

    plain, with_workers = two_epochs(0), two_epochs(2)
    for batches, others in zip(plain, with_workers):
        assert [b["index"].tolist() for b in batches] == [b["index"].tolist() for b in others]
        assert all(torch.equal(b["draw"], o["draw"]) for b, o in zip(batches, others))
    pids = [{int(p) for b in batches for p in b["pid"]} for batches in with_workers]
    assert len(pids[0]) == 2 and pids[0] == pids[1] and os.getpid() not in pids[0]


def test_two_epochs_with_two_loader_workers_give_the_weights_of_none(synthetic_root, tmp_path):
    short = ["--n-epochs", "1", "--n-epochs-decay", "1"]
    assert train.main(tiny_args(synthetic_root, tmp_path, *short, "--name", "none")) == 0
    assert train.main(tiny_args(synthetic_root, tmp_path, *short, "--name", "two", "--num-workers", "2")) == 0
    assert_same_state(load_checkpoint(tmp_path / "none" / "latest.pt"), load_checkpoint(tmp_path / "two" / "latest.pt"))


def test_epoch_files_hold_weights_only_keep_full_keeps_the_last_k_and_both_formats_load(synthetic_root, tmp_path,
                                                                                        capsys):
    """epoch_<NNN>.pt: G and D with their configs, no optimizer or RNG state; --keep-full 1: the newest
    complete state as full_<NNN>.pt, resumable. What evaluation and the study's learning curves read
    (gan.networks.load_generator, gan.run_files.epoch_files) takes these and the former full epoch files."""
    from experiments.study.runs import run_length
    from gan.networks import load_generator
    from gan.run_files import epoch_files as epoch_checkpoints
    run = tmp_path / "tradam_seed0"
    assert train.main(tiny_args(synthetic_root, tmp_path, "--n-epochs", "2", "--n-epochs-decay", "1",
                                "--save-epoch-freq", "1", "--keep-full", "2")) == 0
    latest = load_checkpoint(run / "latest.pt")
    assert sorted(p.name for p in run.glob("*.pt")) == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt",
                                                        "full_002.pt", "full_003.pt", "latest.pt"]
    for epoch in (1, 2, 3):
        snapshot = load_checkpoint(run / f"epoch_{epoch:03d}.pt", require_format=True)
        assert not {"optimizer_G", "optimizer_D", "rng", "scheduler_G"} & snapshot.keys()
        assert snapshot["epoch"] == epoch and snapshot["step"] == 4 * epoch
    full = load_checkpoint(run / "full_002.pt")
    assert full["step"] == 8 and "optimizer_G" in full and not full["finished"]
    assert_same_state(load_checkpoint(run / "full_003.pt"), latest)
    snapshot = load_checkpoint(run / "epoch_003.pt")
    for net in ("netG", "netD"):
        assert all(torch.equal(value, latest[net][name]) for name, value in snapshot[net].items())

    # a former full epoch file (the whole latest.pt) beside the new ones: every one loads the same way
    shutil.copy(run / "full_002.pt", run / "epoch_002.pt")
    assert [e for e, _ in epoch_checkpoints(run)] == [1, 2, 3] and run_length(run)[1] == 4
    for epoch, path in epoch_checkpoints(run):
        generator = load_generator(path)
        expected = load_checkpoint(path)["netG"]
        assert all(torch.equal(v, expected[k]) for k, v in generator.state_dict().items())

    # a snapshot is not resumable (one line), a full_<NNN>.pt is
    capsys.readouterr()
    shutil.copy(run / "epoch_001.pt", run / "latest.pt")
    assert train.main(["--checkpoints-dir", str(tmp_path), "--name", "tradam_seed0", "--resume"]) == 2
    assert "holds weights only" in one_line(capsys.readouterr().err)
    shutil.copy(run / "full_003.pt", run / "latest.pt")
    assert train.main(["--checkpoints-dir", str(tmp_path), "--name", "tradam_seed0", "--resume", "--n-epochs",
                       "2"]) == 0


def test_one_device_decision_from_the_command_line_before_the_process_group(synthetic_root, tmp_path, monkeypatch,
                                                                              capsys):
    """The device comes from --device (or auto), never from the run's saved options, and is decided before
    the process group is made (which then gets that device); under torchrun cuda:N is refused."""
    from common.command_line import InputError
    from common.device import decide_device
    assert train.main(tiny_args(synthetic_root, tmp_path, "--max-steps", "1", "--device", "cpu")) == 0
    calls = []
    real_decide, real_init = training.run.decide_device, training.run.init_from_environment
    monkeypatch.setattr(training.run, "decide_device", lambda *a: calls.append(("decide", a)) or real_decide(*a))
    monkeypatch.setattr(training.run, "init_from_environment", lambda d: calls.append(("init", d)) or real_init(d))
    assert train.main(["--checkpoints-dir", str(tmp_path), "--name", "tradam_seed0", "--resume", "--max-steps",
                       "2"]) == 0
    assert calls == [("decide", ("auto", 1, 0)), ("init", torch.device("cpu"))]
    assert load_checkpoint(tmp_path / "tradam_seed0" / "latest.pt")["options"]["device"] == "auto"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert decide_device("cuda", 2, 1) == decide_device("auto", 2, 1) == torch.device("cuda", 1)
    assert decide_device("cuda:1", 1, 0) == torch.device("cuda", 1)
    with pytest.raises(InputError, match=r"^--device cuda:0: under torchrun every process would use GPU 0"):
        decide_device("cuda:0", 2, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert train.main(tiny_args(synthetic_root, tmp_path, "--name", "n", "--device", "cuda:0")) == 2
    assert "under torchrun every process would use GPU 0" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "n").exists()


@pytest.fixture
def restore_determinism(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled())
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.use_deterministic_algorithms(saved[2])


def test_deterministic_sets_every_switch_before_the_device_is_touched(synthetic_root, tmp_path, monkeypatch,
                                                                      restore_determinism):
    order = []
    real_decide = training.run.decide_device
    monkeypatch.setattr(training.run, "decide_device", lambda *a: order.append(
        ("decide", os.environ.get("CUBLAS_WORKSPACE_CONFIG"), torch.are_deterministic_algorithms_enabled()))
        or real_decide(*a))
    assert train.main(tiny_args(synthetic_root, tmp_path, "--max-steps", "2", "--deterministic")) == 0
    assert order == [("decide", ":4096:8", True)]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark

    # on CUDA: cuDNN autotuning by default, never with --deterministic (checked without a GPU: the switch only)
    for deterministic, benchmark in ((False, True), (True, False)):
        torch.backends.cudnn.benchmark = False
        options = parse_args(["--deterministic"] if deterministic else [])
        training.run.adapt_to_device(training.run.Run(options, None, torch.device("cuda", 0), 0, 1, 2e-4, {}))
        assert torch.backends.cudnn.benchmark is benchmark


@pytest.mark.slow
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
        args = parse_args(["--optim", optim, "--channels-last"])
        config = build_configs(args, torch.device("cpu"))[1]
        if optim == "adam":
            q = torch.nn.Parameter(w.clone(memory_format=torch.preserve_format))
            q.grad = p.grad.clone()
            from gan.optimizers import build_optimizer
            config.lr = 0.1
            build_optimizer([q], config).step()
            torch.testing.assert_close(q.detach(), expected, rtol=1e-4, atol=1e-4)
        assert config.fused is (False if optim in ("adam", "sgd") else None)
        assert build_configs(args, torch.device("cuda", 0))[1].fused is None


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
        assert [v.step for v in values] == [3, 4, 5, 6, 7, 8]  # rounds of S = 3 probes from step 3 on
        assert all(v.value >= 0 for v in values)
    assert train.main(tiny_args(synthetic_root, tmp_path, "--noise-freq", "2", "--noise-probe", "1")) == 2


def test_overwrite_deletes_nothing_until_the_new_run_has_started(synthetic_root, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    run = ckpt / "tradam_seed0"
    assert train.main(tiny_args(synthetic_root, ckpt, "--max-steps", "2")) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()

    no_train = tmp_path / "no_train"
    shutil.copytree(synthetic_root / "val", no_train / "val")
    assert train.main(tiny_args(no_train, ckpt, "--overwrite")) == 2
    assert "train" in one_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before

    broken = shutil.copytree(synthetic_root, tmp_path / "broken")
    jpeg = broken / "train" / "2.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:-2000])  # a truncated JPEG: its header is fine, decoding fails in training
    assert train.main(tiny_args(broken, ckpt, "--overwrite")) == 2
    assert str(jpeg) in one_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # put back
    assert sorted(p.name for p in ckpt.iterdir()) == ["tradam_seed0"]  # nothing left aside

    assert train.main(tiny_args(synthetic_root, ckpt, "--overwrite", "--max-steps", "1")) == 0
    assert f"--overwrite: deleted the previous run at {run}" in capsys.readouterr().out
    assert load_checkpoint(run / "latest.pt")["step"] == 1
    assert sorted(p.name for p in ckpt.iterdir()) == ["tradam_seed0"]


def test_resume_refuses_changed_options_keeps_runtime_ones_and_follows_a_moved_dataset(synthetic_root, tmp_path,
                                                                                      capsys):
    first = shutil.copytree(synthetic_root, tmp_path / "first")
    ckpt = tmp_path / "ckpt"
    latest = ckpt / "tradam_seed0" / "latest.pt"
    assert train.main(tiny_args(first, ckpt, "--max-steps", "2", "--save-latest-freq", "1", "--log-freq", "1")) == 0
    capsys.readouterr()
    for changed, named in ((["--lr", "1e-3"], "--lr 0.001 (the run has 0.0002)"), (["--ngf", "16"], "--ngf 16"),
                           (["--optim-d", "adam"], "--optim-d adam"), (["--no-flip"], "--no-flip True")):
        assert train.main(["--checkpoints-dir", str(ckpt), "--name", "tradam_seed0", "--resume", *changed]) == 2
        assert named in one_line(capsys.readouterr().err)
    assert train.main(["--checkpoints-dir", str(ckpt), "--optim", "tradam", "--seed", "1", "--resume"]) == 2
    assert "tradam_seed1: nothing to resume" in one_line(capsys.readouterr().err)  # --seed names another run
    assert load_checkpoint(latest)["step"] == 2

    # runtime options not given again keep the run's values; those given now apply
    assert train.main(["--checkpoints-dir", str(ckpt), "--name", "tradam_seed0", "--resume", "--max-steps", "3"]) == 0
    options = load_checkpoint(latest)["options"]
    assert (options["save_latest_freq"], options["log_freq"], options["max_steps"]) == (1, 1, 3)
    assert json.loads((latest.parent / "options.json").read_text())["save_latest_freq"] == 1

    moved = first.rename(tmp_path / "moved")
    resume = ["--checkpoints-dir", str(ckpt), "--name", "tradam_seed0", "--resume", "--max-steps", "4"]
    assert train.main(resume) == 2
    assert f"the run's dataset {first} is not there" in one_line(capsys.readouterr().err)
    other = shutil.copytree(moved, tmp_path / "other")
    shutil.copy(other / "val" / "0.jpg", other / "train" / "1.jpg")  # same frame count, other content
    assert train.main(resume + ["--dataroot", str(other)]) == 2
    assert "not the dataset the run was trained on" in one_line(capsys.readouterr().err)
    (other / "train" / "1.jpg").unlink()
    assert train.main(resume + ["--dataroot", str(other)]) == 2
    assert "3 train / 3 val frames, but the run was trained on 4 / 3" in one_line(capsys.readouterr().err)
    assert train.main(resume + ["--dataroot", str(moved)]) == 0
    state = load_checkpoint(latest)
    assert state["step"] == 4 and state["options"]["dataroot"] == str(moved)


def _change_bytes_keeping_names_sizes_and_mtimes(path: Path, count: int = 40) -> None:
    content = bytearray(path.read_bytes())
    middle = len(content) // 2
    content[middle:middle + count] = bytes(b ^ 0xFF for b in content[middle:middle + count])
    stat = path.stat()
    path.write_bytes(bytes(content))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_resume_refuses_a_dataset_of_other_bytes_and_follows_a_copy_of_the_same_bytes(synthetic_root, tmp_path):
    """Same names and sizes, 40 bytes changed in every training JPEG: refused by content; a copy of the same
    bytes elsewhere, with other mtimes, resumes; so does a checkpoint of an older version (names and sizes only)."""
    data = shutil.copytree(synthetic_root, tmp_path / "data")
    ckpt = tmp_path / "ckpt"
    latest = ckpt / "tradam_seed0" / "latest.pt"
    assert train.main(tiny_args(data, ckpt, "--max-steps", "1")) == 0
    assert set(load_checkpoint(latest)["data_fingerprint"]) == {"train_frames", "val_frames", "digest", "content"}
    resume = ["--checkpoints-dir", str(ckpt), "--name", "tradam_seed0", "--resume", "--device", "cpu"]

    other = shutil.copytree(data, tmp_path / "other")
    for jpeg in (other / "train").glob("*.jpg"):
        _change_bytes_keeping_names_sizes_and_mtimes(jpeg)
    result = run_cli(*resume, "--dataroot", str(other), "--max-steps", "2")
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr) == (
        f"error: --dataroot {other.resolve()}: not the dataset the run was trained on (same file names and sizes, "
        f"but the files' contents differ from those of {data.resolve()})")
    assert load_checkpoint(latest)["step"] == 1

    moved = shutil.copytree(data, tmp_path / "moved", copy_function=shutil.copyfile)  # other mtimes, stale cache
    shutil.rmtree(data)
    assert train.main(resume + ["--dataroot", str(moved), "--max-steps", "2"]) == 0
    assert load_checkpoint(latest)["step"] == 2

    state = torch.load(latest, weights_only=True)
    del state["data_fingerprint"]["content"]  # as an older version saved it
    torch.save(state, latest)
    (latest.parent / "latest.pt.sha256").unlink()
    assert train.main(resume + ["--max-steps", "3"]) == 0
    assert load_checkpoint(latest)["step"] == 3


class FullDisk:
    """A file whose writes fail with ENOSPC once ``limit`` bytes are written."""

    def __init__(self, file, limit):
        self.file, self.limit, self.written = file, limit, 0

    def write(self, data):
        self.written += len(data)
        if self.written > self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_disk_and_file_errors_are_one_line(synthetic_root, tmp_path, capsys, monkeypatch):
    import common.checkpoint

    # a read-only checkpoints folder (root ignores permission bits: then the kernel's answer is emulated)
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:
        real_mkdir = os.mkdir

        def mkdir(path, *args, **kwargs):
            if Path(path).parent == read_only:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", mkdir)
    assert train.main(tiny_args(synthetic_root, read_only, "--max-steps", "1")) == 2
    assert one_line(capsys.readouterr().err) == f"error: {read_only}: cannot create the run folder (Permission denied)"
    assert not any(read_only.iterdir())
    monkeypatch.undo()

    # a full disk during the second checkpoint write
    real_save, saved = torch.save, []

    def save(obj, file, *args, **kwargs):
        saved.append(file)
        return real_save(obj, FullDisk(file, 10_000) if len(saved) == 2 else file, *args, **kwargs)

    monkeypatch.setattr(common.checkpoint.torch, "save", save)
    ckpt = tmp_path / "full"
    latest = ckpt / "tradam_seed0" / "latest.pt"
    assert train.main(tiny_args(synthetic_root, ckpt, "--save-latest-freq", "2")) == 2
    assert one_line(capsys.readouterr().err) == (f"error: {latest}: cannot write the checkpoint (No space left on "
                                                 f"device); the previous one is intact")
    assert load_checkpoint(latest, require_format=True)["step"] == 2
    assert sorted(p.name for p in latest.parent.glob(".latest.pt*")) == []
    monkeypatch.undo()

    # an image too large to decode safely (PIL's decompression-bomb check, here with a lower limit)
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert train.main(tiny_args(synthetic_root, tmp_path / "bomb")) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {synthetic_root / 'train' / '0.jpg'}: image too large to decode")


# ----------------------------------------------------------------------------------------- resume validation
@pytest.fixture(scope="module")
def saved_run(synthetic_root, tmp_path_factory):
    """A TRAdam run of 2 steps (its folder is copied by each test)."""
    ckpt = tmp_path_factory.mktemp("saved_run")
    assert train.main(tiny_args(synthetic_root, ckpt, "--max-steps", "2")) == 0
    return ckpt / "tradam_seed0"


def _nan_in_weight(state):
    name = next(iter(state["netG"]))
    state["netG"][name].view(-1)[0] = float("nan")
    return f"netG.{name}: holds NaN or infinite values"


def _inf_in_buffer(state):
    name = next(k for k in state["netD"] if k.endswith("running_var"))
    state["netD"][name].view(-1)[1] = float("inf")
    return f"netD.{name}: holds NaN or infinite values"


def _wider_options(state):
    state["options"]["ngf"] = 16


def _no_options(state):
    del state["options"]


def _step_as_text(state):
    state["step"] = "four"


def _adam_run_with_tradam_state(state):
    state["options"]["optim"] = state["options"]["optim_d"] = "adam"


def _negative_epoch(state):
    state["epoch"] = -5


def _huge_ngf(state):
    state["options"]["ngf"] = 100_000_000


@pytest.mark.parametrize("change, field", [
    (_nan_in_weight, None),
    (_inf_in_buffer, None),
    (_wider_options, "netG.model.model.0.weight: shape (8, 3, 4, 4), but its options (--ngf 16"),
    (_no_options, "options: missing"),
    (_step_as_text, "step: expected an integer >= 0, found 'four'"),
    (_adam_run_with_tradam_state, "optimizer_G: state of tradam, but the run's --optim is adam"),
    (_negative_epoch, "epoch: expected an integer >= 0, found -5"),
    (_huge_ngf, "options: --ngf must be <= 1024"),
])
def test_resume_refuses_a_checkpoint_whose_contents_are_wrong_before_any_work(saved_run, tmp_path, change, field):
    run = shutil.copytree(saved_run, tmp_path / "tradam_seed0")
    latest = run / "latest.pt"
    state = torch.load(latest, weights_only=True)
    field = change(state) or field
    torch.save(state, latest)
    (run / "latest.pt.sha256").unlink()  # what is checked here is the content
    before = latest.read_bytes()
    result = run_cli("--checkpoints-dir", str(tmp_path), "--name", "tradam_seed0", "--resume", "--device", "cpu")
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"error: {latest}: ") and field in line, line
    assert latest.read_bytes() == before and "step" not in result.stdout


def test_resume_refuses_a_checkpoint_changed_on_disk_since_its_save(saved_run, tmp_path):
    run = shutil.copytree(saved_run, tmp_path / "tradam_seed0")
    latest = run / "latest.pt"
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0x01  # a flipped bit inside a tensor: the zip container does not notice
    latest.write_bytes(bytes(data))
    assert torch.load(latest, weights_only=True)["step"] == 2  # it still loads
    result = run_cli("--checkpoints-dir", str(tmp_path), "--name", "tradam_seed0", "--resume", "--device", "cpu")
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        f"error: {latest}: its SHA-256 differs from the one recorded when it was written ({latest}.sha256); the "
        f"file changed on disk since: use an intact copy (if you replaced it on purpose, delete latest.pt.sha256)")
    state = torch.load(saved_run / "latest.pt", weights_only=True)
    state["options"]["log_freq"] = 3  # another complete state than the one recorded: a --keep-full copy
    torch.save(state, run / "full_001.pt")
    shutil.copyfile(run / "full_001.pt", latest)  # copied over latest.pt by hand, as the README says
    assert file_sha256(latest) not in (run / "latest.pt.sha256").read_text()
    assert run_cli("--checkpoints-dir", str(tmp_path), "--name", "tradam_seed0", "--resume", "--device", "cpu",
                   "--max-steps", "3").returncode == 0


@pytest.mark.parametrize("option, value", [("--ngf", "100000000"), ("--ndf", str(10**12)), ("--crop-size", "65536")])
def test_sizes_beyond_their_bounds_are_refused_with_the_reason(tmp_path, option, value):
    result = run_cli("--checkpoints-dir", str(tmp_path), option, value, "--device", "cpu")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"error: {option} must be <= ") and f"got {value}" in line and "(" in line
    assert not any(tmp_path.iterdir())


def test_a_batch_larger_than_the_training_set_is_refused_before_any_step(synthetic_root, tmp_path):
    result = run_cli(*tiny_args(synthetic_root, tmp_path, "--batch-size", "10", "--device", "cpu"))
    assert result.returncode == 2
    assert one_line(result.stderr) == (f"error: --batch-size 10: the training set has 4 images "
                                       f"({synthetic_root / 'train'}); choose at most that")
    assert not (tmp_path / "tradam_seed0").exists()


def test_a_resume_says_so_when_options_json_was_edited_by_hand(saved_run, tmp_path):
    run = shutil.copytree(saved_run, tmp_path / "tradam_seed0")
    options = json.loads((run / "options.json").read_text())
    (run / "options.json").write_text(json.dumps({**options, "lr": 0.5, "num_workers": 3}))  # num_workers: runtime
    result = run_cli("--checkpoints-dir", str(tmp_path), "--name", "tradam_seed0", "--resume", "--device", "cpu",
                     "--max-steps", "3")
    assert result.returncode == 0, result.stderr
    assert (f"{run / 'options.json'}: edited since the run saved it (lr); the run continues with the options of its "
            f"checkpoint, and options.json is written again from them") in result.stdout
    assert json.loads((run / "options.json").read_text())["lr"] == options["lr"]
