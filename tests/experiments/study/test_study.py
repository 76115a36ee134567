"""The seeds study through its real command at tiny sizes, and its statistics on known numbers."""
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import experiments.study.analysis as study_analysis
import experiments.study.cli as study_cli
import experiments.study.design as study_design
import experiments.study.jobs as study_jobs
import experiments.study.report as study_report
import experiments.study.runs as study_runs
import train
from common.checkpoint import load_checkpoint
from eval.config import parse_config
from eval.segmenters.registry import REGISTRY
from experiments.study.statistics import holm

REPO = Path(__file__).resolve().parents[3]


def test_arms_and_seeds_are_the_plans():
    arms = study_design.make_arms(2e-4, 0.999)
    h10 = sum(1 / k for k in range(1, 11))  # 2.928968
    assert study_design.MEAN_INNER_FACTOR == pytest.approx(h10 / 10)
    assert arms["adam_matched"].options == ("--optim", "adam", "--lr", f"{2e-4 * h10 / 10:.6g}")  # 5.85794e-05
    assert arms["tradam_adam_step"].options == ("--optim", "tradam", "--lr", f"{2e-4 * 10 / h10:.6g}")  # 0.000682821
    assert float(arms["tradam_adam_step"].options[-1]) == pytest.approx(6.828e-4, abs=1e-7)
    assert arms["tradam_flat"].options == ("--optim", "tradam", "--no-inner-decay")
    assert arms["tradam_official"].options == ("--optim", "tradam", "--prox-mode", "reference")
    config, listed = study_cli.parse_args([])
    assert config.arms == ("adam", "tradam", "tradam_adam_step", "adam_matched") and not listed
    assert config.seeds == tuple(range(100, 116)) and config.threads == 1
    assert (config.noise_freq, config.noise_probe, config.segmenter_dir) == (800, 32, "checkpoints/segmenters/demo")
    assert study_cli.parse_args(["--noise-freq", "400"])[0].noise_freq == 400  # the command line wins
    beta2 = float(arms["adam_beta2"].options[-1])
    # Half-life in samples kept: at batch 16 one step of β2 = 0.999 spans 16 samples at batch size 1.
    assert beta2 ** 16 == pytest.approx(0.999, abs=1e-8)


def known_values(seeds):
    """Per-run numbers of the four confirmatory arms: TRAdam above Adam by 0.01 + 0.001·s in every seed; TRAdam
    at Adam's step mixed; Adam at TRAdam's step 0.002 above or below TRAdam; direction noise of TRAdam a
    third lower."""
    iou = {f"adam_seed{s}": 0.30 for s in seeds}
    iou |= {f"tradam_seed{s}": 0.31 + 0.001 * s for s in seeds}
    iou |= {f"tradam_adam_step_seed{s}": 0.30 + (-1) ** s * 0.002 * (s + 1) for s in seeds}
    iou |= {f"adam_matched_seed{s}": iou[f"tradam_seed{s}"] + (-1) ** s * 0.002 for s in seeds}
    noise = {name: math.log(1.0 if name.startswith("adam") else 2 / 3) for name in iou}
    return {"fcn8s:class_iou": iou, "noise:log_direction_ratio": noise}


def test_the_four_hypotheses_are_one_holm_family_with_their_verdicts():
    seeds = tuple(range(8))
    result = {h["name"]: h for h in study_analysis.confirmatory(known_values(seeds), seeds)["hypotheses"]}
    assert list(result) == ["H1", "H2", "H3", "H4"]
    # H1: 8 positive differences: 2 of the 256 sign patterns are as extreme
    assert result["H1"]["p"] == 2 / 256 and result["H1"]["mean"] == pytest.approx(0.0135)
    # H2: differences ±0.002·(s+1) alternating: sum −0.008; count the patterns by hand
    d2 = [(-1) ** s * 0.002 * (s + 1) for s in seeds]
    hits = sum(abs(sum(e * x for e, x in zip(signs, d2))) >= abs(sum(d2)) - 1e-15
               for signs in itertools.product((1, -1), repeat=8))
    assert result["H2"]["p"] == pytest.approx(hits / 256)
    # H3: tradam − adam_matched = ∓0.002 alternating, well inside ±0.01: both one-sided tests reject at 1/256
    assert result["H3"]["kind"] == "equivalence" and result["H3"]["p"] == pytest.approx(1 / 256)
    assert result["H4"]["p"] == 2 / 256 and result["H4"]["mean"] == pytest.approx(math.log(2 / 3))
    raw = [result[h]["p"] for h in ("H1", "H2", "H3", "H4")]
    adjusted = holm(raw)
    assert [result[h]["p_holm"] for h in ("H1", "H2", "H3", "H4")] == pytest.approx(adjusted)
    assert result["H3"]["p_holm"] == pytest.approx(4 / 256)  # the smallest, times 4
    assert result["H1"]["verdict"] == "the arm is higher" and result["H2"]["verdict"] == "no difference shown"
    assert result["H3"]["verdict"] == "equivalent within ±0.01" and result["H4"]["verdict"] == "the arm is lower"
    assert result["H1"]["median"] == pytest.approx(0.0135) and result["H1"]["leave_one_out"] == pytest.approx(
        [0.0135 - 0.0005 * 8 / 7 + 0.0005 * 0 / 7 - 0.0005 / 7 * 0, 0.0135 + 0.0005 * 8 / 7 - 0.0005 / 7 * 1],
        abs=1e-3)
    assert result["H1"]["per_seed"]["3"] == [0.30, 0.313]
    assert set(result["H1"]["mde"]) == {"0.0125", "0.05"} and result["H1"]["mde"]["0.0125"] > result["H1"]["mde"]["0.05"]


def test_a_hypothesis_whose_arms_are_not_in_the_design_is_left_out():
    seeds = (0, 1, 2)
    values = {k: {n: v for n, v in by_run.items() if n.startswith(("adam_seed", "tradam_seed"))}
              for k, by_run in known_values(seeds).items()}
    assert [h["name"] for h in study_analysis.confirmatory(values, seeds)["hypotheses"]] == ["H1", "H4"]


def test_the_noise_by_k_averages_each_runs_rounds_then_the_seeds():
    arms = [study_design.Arm("tradam", "TRAdam", ())]
    noise = {"tradam_seed0": {"k": [(4, 0), (5, 1), (8, 0), (9, 1)], "grad_ratio": [(4, 1.0), (5, 2.0), (8, 3.0), (9, 4.0)],
                              "direction_ratio": [(4, 1.0), (5, 1.0), (8, 3.0), (9, 3.0)]},
             "tradam_seed1": {"k": [(4, 0), (5, 1)], "grad_ratio": [(4, 5.0), (5, 6.0)],
                              "direction_ratio": [(4, 5.0), (5, 4.0)]}}
    by_k = study_analysis.noise_by_k(noise, arms, (0, 1))["tradam"]
    assert by_k["0"] == {"grad_ratio": (2.0 + 5.0) / 2, "direction_ratio": (2.0 + 5.0) / 2, "runs": 2}
    assert by_k["1"]["grad_ratio"] == (3.0 + 6.0) / 2 and by_k["1"]["direction_ratio"] == (2.0 + 4.0) / 2
    measures = study_analysis.noise_measures(noise)
    assert measures["noise:log_direction_ratio"]["tradam_seed0"] == pytest.approx(math.log(2.0))


def test_size_under_nulls_shaped_like_a_pilot():
    pilot = [-0.025, -0.042, -0.032, 0.004, 0.001, -0.011, -0.009, 0.002]  # skewed
    sizes = study_analysis.null_sizes(pilot, n=16, simulations=400)
    assert sizes["symmetric"] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)  # exact under the sharp null
    assert 0 <= sizes["skewed"] <= 0.2 and sizes["n"] == 16


# Test hook of the children: a train.py started by the study under $STUDY_MARKS stops after its second
# step, notes it (step2.<pid>) and waits there until a SIGTERM has reached it (passed on to train.py's own
# handler), so that the signal lands in the middle of every training under way, whatever the timing.
HOOK = """
import os, signal, sys, time
from pathlib import Path
if os.environ.get("STUDY_MARKS") and sys.argv and sys.argv[0].endswith("train.py"):
    import gan.pix2pix
    marks, real_step, calls = Path(os.environ["STUDY_MARKS"]), gan.pix2pix.Pix2Pix.training_step, [0]

    def held_step(self, *args, **kwargs):
        losses = real_step(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == 2:
            got, previous = [], signal.getsignal(signal.SIGTERM)

            def note(signum, frame):
                got.append(signum)
                previous(signum, frame)
            signal.signal(signal.SIGTERM, note)
            (marks / f"step2.{os.getpid()}").touch()
            deadline = time.monotonic() + 240
            while not got and time.monotonic() < deadline:
                time.sleep(0.02)
            signal.signal(signal.SIGTERM, previous)
        return losses
    gan.pix2pix.Pix2Pix.training_step = held_step
"""
QUICK = ["--preset", "quick", "--arms", "adam", "tradam", "--seeds", "0", "1", "--device", "cpu", "--jobs", "2"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.e2e
def test_quick_study_through_the_command(synthetic_root, tmp_path, capsys, restore_threads):
    """The real command, 2 jobs at once: SIGTERM while two trainings run stops them (each saves) and the
    study exits 143 with one line; the same command then resumes and writes the report, whose numbers are
    recomputed here; a run trained alone with the same options is bit-identical to the study's."""
    runs, out = tmp_path / "runs", tmp_path / "report"
    args = [*QUICK, "--dataroot", str(synthetic_root), "--checkpoints-dir", str(runs), "--out", str(out)]
    hooks, marks = tmp_path / "hooks", tmp_path / "marks"
    hooks.mkdir(), marks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOOK)
    env = dict(os.environ, STUDY_MARKS=str(marks),
               PYTHONPATH=os.pathsep.join([str(hooks), str(REPO)]))
    process = subprocess.Popen([sys.executable, "-m", "experiments.study", *args], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len({p.suffix for p in marks.glob("step2.*")}) < 2:  # two trainings are under way
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no two trainings at once"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines() == [
        "interrupted by SIGTERM: 12 of 14 jobs not done (those running saved and stopped); the same command resumes"]
    children = {int(p.suffix[1:]) for p in marks.glob("step2.*")}
    assert len(children) == 2 and not any(pid_alive(pid) for pid in children)  # no orphan goes on training
    for name in ("adam_seed0", "adam_seed1"):  # the two under way saved, unfinished
        state = load_checkpoint(runs / name / "latest.pt")
        assert not state["finished"] and state["step"] == 2  # saved right after the step under way
    assert not (runs / "tradam_seed0").exists()

    code = study_cli.main(args)  # the same command resumes
    assert code == 0, capsys.readouterr().err
    for name in ("study.md", "study.json", "learning_curves.png", "noise.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "study.json").read_text())
    assert set(report["train_options"]) == {"adam_seed0", "adam_seed1", "tradam_seed0", "tradam_seed1"}
    assert "--seed" in report["train_options"]["tradam_seed1"] and "tradam" in report["train_options"]["tradam_seed1"]
    # The paired difference in the report is recomputed here from the per-run numbers (t interval, 1 df).
    per_run = report["per_run"]["val_l1"]
    diffs = [per_run[f"tradam_seed{s}"] - per_run[f"adam_seed{s}"] for s in (0, 1)]
    reported = report["analysis"]["val_l1"]["vs_baseline"]["tradam"]
    assert reported["diffs"] == pytest.approx(diffs)
    # sd of two values |d0 − d1|/√2, half-width t_{0.975,1}·sd/√2 = 12.706·|d0 − d1|/2
    mean, half = sum(diffs) / 2, 12.7062 * abs(diffs[0] - diffs[1]) / 2
    assert (reported["low"], reported["high"]) == pytest.approx((mean - half, mean + half), rel=1e-4)
    assert reported["p"] == (0.5 if diffs[0] * diffs[1] > 0 else 1.0)  # 2 seeds: 4 sign patterns
    tests = report["tests"]
    assert tests["primary"]["measure"] == "fcn8s:class_iou" and tests["primary"]["arm"] == "tradam"
    assert len(tests["family"]) == 6 and all(not e["significant"] for e in tests["family"])
    curves = report["curves"]["tradam"]["0"]
    assert [step for step, _ in curves["val_l1"]] == [4, 8]  # 4 train frames: epochs 1 and 2
    assert report["noise"]["tradam"]["0"]["direction_ratio"]
    text = (out / "study.md").read_text()
    for words in ("Primary result", "Holm", "not the paper's experiment", "can and cannot conclude", "Ground truth",
                  "MDE"):
        assert words in text, words
    assert "*" not in text.replace("**", "")  # no significance stars
    # Threads: pinned to 1 in every run's options.json and the scorers' metadata.
    assert json.loads((runs / "tradam_seed1" / "options.json").read_text())["threads"] == 1
    assert load_checkpoint(runs / "segmenters" / "fcn8s.pt")["metadata"]["training"]["threads"] == 1

    # Trained alone here (not beside another job), a run of the same options is bit-identical.
    alone = tmp_path / "alone"
    options = list(report["train_options"]["tradam_seed1"])
    options[options.index("--checkpoints-dir") + 1] = str(alone)
    assert train.main([*options, "--overwrite"]) == 0
    mine, theirs = load_checkpoint(alone / "tradam_seed1" / "latest.pt"), load_checkpoint(runs / "tradam_seed1" / "latest.pt")
    for net in ("netG", "netD"):
        for key, value in theirs[net].items():
            assert torch.equal(mine[net][key], value), f"{net}.{key}"

    # Stopped early, the study writes the records of the runs trained and scored by then, and only those.
    config = study_cli.parse_args([*args, "--out", str(tmp_path / "partial")])
    arms, stored = study_design.study_arms(config), study_runs.stored_records(config)
    _, commands, folders = study_jobs.study_jobs(config, arms, stored)
    scored = folders["adam_seed0"][0] / "results.json"
    scored.rename(tmp_path / "aside.json")
    study_runs.write_records(config, arms, stored, commands, folders, only_scored=True)
    assert sorted(p.name for p in stored.folder.glob("*.json")) == [
        "adam_seed1.json", "tradam_seed0.json", "tradam_seed1.json"]
    (tmp_path / "aside.json").rename(scored)

    # A second call reuses every run, scorer and score.
    capsys.readouterr()
    assert study_cli.main(args) == 0
    assert capsys.readouterr().out.count("up to date") == 14

    # Each run's record: from a fresh clone (no run folder, no scorer) only the scorers are trained again, to
    # check the records against them, and the report is the same to the last bit.
    records = out / "runs"
    assert sorted(p.name for p in records.glob("*.json")) == [f"{n}.json" for n in sorted(report["train_options"])]
    record = json.loads((records / "tradam_seed1.json").read_text())
    assert record["final"]["fcn8s"]["class_iou"] == report["per_run"]["fcn8s:class_iou"]["tradam_seed1"]
    assert "--checkpoints-dir" not in record["key"]["train_options"] and record["key"]["torch"] == torch.__version__
    shutil.rmtree(runs)
    assert study_cli.main(args) == 0
    said = capsys.readouterr().out
    assert said.count("up to date") == 12 and "4 with a record" in said and "scorer fcn8s: done" in said
    assert not (runs / "adam_seed0").exists()
    assert json.loads((out / "study.json").read_text()) == report
    # A record whose scorer differs is stale: its run is trained and scored again, and gives the same numbers.
    record = json.loads((records / "adam_seed1.json").read_text())
    record["scorers"]["fcn8s"]["sha256"] = "0" * 64
    (records / "adam_seed1.json").write_text(json.dumps(record))
    assert study_cli.main(args) == 0
    said = capsys.readouterr().out
    assert "train adam_seed1: done" in said and said.count("up to date") == 11
    assert not (runs / "adam_seed0").exists()
    assert json.loads((out / "study.json").read_text()) == report


def test_bad_arms_and_seeds_are_one_line(capsys):
    assert study_cli.main(["--arms", "tradam"]) == 2
    assert "'adam' must be one of them" in capsys.readouterr().err
    assert study_cli.main(["--arms", "adam", "lion"]) == 2
    assert "unknown arm 'lion'" in capsys.readouterr().err
    assert study_cli.main(["--seeds", "3"]) == 2


def test_the_demo_study_scores_with_the_demo_scorers():
    """One pair of built-in-city scorers: the study trains exactly `make demo`'s (the ones that rank)."""
    assert study_design.PRESETS["demo"]["segmenters"] == {arch: ["--preset", "demo"]
                                                  for arch in [a for a, spec in REGISTRY.items() if "demo" in spec.presets]}


def test_the_commands_it_runs_take_the_options_it_passes(tmp_path):
    from eval import train_segmenter
    config = study_design.StudyConfig(checkpoints_dir=str(tmp_path / "runs"), device="cuda:1", dataroot="data", jobs=2,
                               threads=3, seeds=(3, 4), out=str(tmp_path / "report"))
    arms = [study_design.make_arms(2e-4, 0.999)[a] for a in ("adam", "tradam")]
    trainings, commands = study_jobs.train_jobs(config, arms)
    assert [job.name for job in trainings] == ["train adam_seed3", "train adam_seed4", "train tradam_seed3",
                                               "train tradam_seed4"]
    run = train.parse_args(list(trainings[3].command[2:]))
    assert (run.checkpoints_dir, run.device, run.seed, run.dataroot, run.threads, run.optim, run.overwrite) == (
        config.checkpoints_dir, "cuda:1", 4, "data", 3, "tradam", True)
    for job in study_jobs.scorer_jobs(config):
        scorer = train_segmenter.parse_args(list(job.command[3:]))
        assert (scorer.threads, scorer.device, scorer.dataroot) == (3, "cuda:1", "data")
    jobs, _, folders = study_jobs.study_jobs(config, arms, study_runs.stored_records(config))
    by_name = {job.name: job for job in jobs}
    assert list(by_name)[:5] == ["scorer fcn8s", "scorer deeplabv3plus_resnet10t", "train adam_seed3",
                                 "score adam_seed3", "curves adam_seed3"]  # a run is scored as soon as trained
    assert by_name["score tradam_seed3"].after == ("train tradam_seed3", "scorer fcn8s",
                                                   "scorer deeplabv3plus_resnet10t")
    assert by_name["train tradam_seed3"].after == ()  # no record: it need not wait for the scorers
    scored = parse_config(list(by_name["score tradam_seed3"].command[2:]))
    assert (scored.checkpoints_dir, scored.device, scored.runs, scored.out) == (
        config.checkpoints_dir, "cuda:1", ["tradam_seed3"], str(folders["tradam_seed3"][0]))
    assert scored.segmenter_dir == str(tmp_path / "runs" / "segmenters")
    epoch = tmp_path / "runs" / "adam_seed3" / "epoch_001.pt"
    epoch.parent.mkdir(parents=True)
    epoch.touch()
    assert not by_name["curves adam_seed3"].skip()  # an epoch file to score
    curve = parse_config(list(by_name["curves adam_seed3"].command()[2:]))
    assert (curve.generator, curve.segmenters, curve.out) == ([str(epoch)], ["fcn8s"], str(folders["adam_seed3"][1]))
    assert by_name["curves adam_seed4"].skip()  # no epoch files: nothing to score


def test_bad_jobs_and_threads_are_one_line(tmp_path, capsys):
    assert study_cli.main(["--jobs", "0", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "error: --jobs must be >= 1, got 0\n"
    assert study_cli.main(["--threads", "0", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "error: --threads must be >= 1, got 0\n"


def test_former_checkpoints_spelling_and_device_names(tmp_path, capsys):
    assert study_cli.parse_args(["--checkpoints", "runs"]).checkpoints_dir == "runs"
    assert capsys.readouterr().err == "note: --checkpoints is now spelled --checkpoints-dir\n"
    assert study_cli.main(["--device", "tpu", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "error: --device tpu: expected auto, cpu, cuda or cuda:N\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_a_truncated_run_stops_the_study_with_one_line(synthetic_root, tmp_path):
    """A run whose latest.pt was cut short: the study says so in one line naming the file, exit 2, and
    starts no run."""
    runs = tmp_path / "runs"
    run = runs / "adam_seed0"
    run.mkdir(parents=True)
    (run / "latest.pt").write_bytes(b"PK\x03\x04 cut short")
    result = subprocess.run([sys.executable, "-m", "experiments.study", *QUICK, "--arms", "adam", "tradam", "--jobs", "1",
                             "--dataroot", str(synthetic_root), "--checkpoints-dir", str(runs),
                             "--out", str(tmp_path / "report")],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {run / 'latest.pt'}: cannot be read as a checkpoint")
    assert not (runs / "adam_seed1").exists() and not (runs / "tradam_seed0").exists() and not (tmp_path / "report" / "study.md").exists()
