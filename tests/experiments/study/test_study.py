"""The seeds study through its real command at tiny sizes, and its statistics on known numbers."""
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
from experiments.study.statistics import paired_difference

REPO = Path(__file__).resolve().parents[3]


def test_arms_are_the_documented_controls():
    arms = study_design.make_arms(2e-4, 0.999)
    assert study_design.MEAN_INNER_FACTOR == pytest.approx(sum(1 / k for k in range(1, 11)) / 10)  # H_10/10 = 0.2929
    assert arms["adam_matched"].options == ("--optim", "adam", "--lr", f"{2e-4 * 0.2928968:.6g}")
    assert arms["tradam_flat"].options == ("--optim", "tradam", "--no-inner-decay")
    assert arms["tradam_official"].options == ("--optim", "tradam", "--prox-mode", "reference")
    assert study_design.DEFAULT_ARMS == ("adam", "tradam", "tradam_official", "tradam_flat", "adam_matched")
    assert study_cli.parse_args([]).seeds == tuple(range(8)) and study_cli.parse_args([]).threads == 1
    beta2 = float(arms["adam_beta2"].options[-1])
    # Half-life in samples kept: at batch 16 one step of β2 = 0.999 spans 16 samples at batch size 1.
    assert beta2 ** 16 == pytest.approx(0.999, abs=1e-8)


def test_analysis_pairs_by_seed_on_known_numbers():
    arms = [study_design.Arm("adam", "Adam", ()), study_design.Arm("tradam", "TRAdam", ())]
    values = {"m": {"adam_seed0": 0.50, "adam_seed1": 0.60, "adam_seed2": 0.55,
                    "tradam_seed0": 0.52, "tradam_seed1": 0.63, "tradam_seed2": 0.56}}
    result = study_analysis.analyse(arms, (0, 1, 2), values)["m"]
    assert result["summary"]["adam"]["mean"] == pytest.approx(0.55)
    assert result["summary"]["tradam"]["std"] == pytest.approx(math.sqrt(((0.52 - 0.57) ** 2 + 0.06 ** 2 + 0.01 ** 2) / 2))
    diff = result["vs_baseline"]["tradam"]
    assert diff["diffs"] == pytest.approx([0.02, 0.03, 0.01])
    # mean 0.02, sd 0.01: 0.02 ± t_{0.975,2}·0.01/√3 = 0.02 ± 4.3027·0.005774
    assert (diff["low"], diff["high"]) == pytest.approx((0.02 - 0.024842, 0.02 + 0.024842), abs=1e-5)
    assert diff["p"] == 0.25  # all 3 positive: 2 of 8 sign patterns as extreme
    assert diff == paired_difference(result["per_seed"]["tradam"], result["per_seed"]["adam"])


def test_the_primary_comparison_is_alone_and_the_rest_holm_corrected():
    arms = [study_design.Arm("adam", "Adam", ()), study_design.Arm("tradam", "TRAdam", ()), study_design.Arm("other", "Other", ())]
    seeds = tuple(range(8))
    # tradam beats adam on m1 in all 8 seeds (p = 2/256); "other" on m1 too; m2: mixed signs.
    values = {"s:class_iou": {**{f"adam_seed{s}": 0.5 for s in seeds}, **{f"tradam_seed{s}": 0.6 + s / 100 for s in seeds},
                              **{f"other_seed{s}": 0.6 + s / 100 for s in seeds}},
              "m2": {**{f"adam_seed{s}": 0.5 for s in seeds}, **{f"tradam_seed{s}": 0.5 + (-1) ** s * (s + 1) / 100
                                                                  for s in seeds},
                     **{f"other_seed{s}": 0.5 + (-1) ** s / 100 for s in seeds}}}
    analysis = study_analysis.analyse(arms, seeds, values)
    tests = study_analysis.comparisons(analysis, arms, "s:class_iou")
    assert tests["primary"] == {"measure": "s:class_iou", "arm": "tradam", "p": 2 / 256, "significant": True}
    family = {(e["measure"], e["arm"]): e for e in tests["family"]}
    assert set(family) == {("s:class_iou", "other"), ("m2", "tradam"), ("m2", "other")}
    # Holm over 3: the same p of 2/256 becomes 3·2/256 = 0.0234, still below 0.05.
    assert family[("s:class_iou", "other")]["p_holm"] == pytest.approx(3 * 2 / 256)
    assert family[("s:class_iou", "other")]["significant"]
    assert not family[("m2", "tradam")]["significant"] and not family[("m2", "other")]["significant"]
    assert tests["smallest_p"] == 2 / 256 and tests["smallest_p_holm"] == pytest.approx(6 / 256)
    text = study_report.findings({"tests": tests, "display_names": {"s": "S"}, "analysis": analysis, "seeds": list(seeds),
                           "arms": [{"name": a.name, "label": a.label} for a in arms], "ranking_margins": {}})
    assert any("1 of 3 significant after Holm" in line for line in text)


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
