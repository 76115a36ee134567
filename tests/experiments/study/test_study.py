"""The seeds study through its real command at tiny sizes, and its statistics on known numbers."""
import itertools
import json
import math
import os
import shlex
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
import experiments.study.runs as study_runs
import train
from common.checkpoint import load_checkpoint
from eval.config import parse_config
from experiments.study.statistics import holm

REPO = Path(__file__).resolve().parents[3]


def test_arms_and_seeds_are_the_plans():
    arms = study_design.make_arms(2e-4, 0.999)
    h10 = sum(1 / k for k in range(1, 11))  # 2.928968
    assert study_design.MEAN_INNER_FACTOR == pytest.approx(h10 / 10)
    assert arms["adam_matched"].options == ("--optim", "adam", "--lr", f"{2e-4 * h10 / 10:.6g}")  # 5.85794e-05
    assert arms["tradam_adam_step"].options == ("--optim", "tradam", "--lr", f"{2e-4 * 10 / h10:.6g}")  # 0.000682834
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


@pytest.fixture(scope="module")
def tiny_segmenters(tmp_path_factory):
    """A folder with one tiny untrained FCN-8s whose predictions vary (random score layers): what the study
    scores with in these tests (the real study uses the shipped demo segmenters)."""
    from eval.segmenters.files import save_segmenter, segmenter_metadata
    from eval.segmenters.registry import build_segmenter
    folder = tmp_path_factory.mktemp("segmenters")
    torch.manual_seed(7)
    model = build_segmenter("fcn8s", {"width_mult": 1 / 16}, input_size=(32, 32))
    with torch.no_grad():
        for layer in (model.net.score_fr, model.net.score_pool4, model.net.score_pool3):
            layer.weight.normal_(0, 1.0)
    save_segmenter(folder / "fcn8s.pt", model, segmenter_metadata(model, [f"c{i}" for i in range(19)], (32, 32),
                                                                   {"dataroot": "tiny", "name": "tiny"}, None))
    return folder


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


@pytest.mark.slow
@pytest.mark.e2e
def test_quick_study_through_the_command(synthetic_root, tiny_segmenters, tmp_path, capsys, restore_threads):
    """The real command, 2 jobs at once: SIGTERM while two trainings run stops them (each saves) and the
    study exits 143 with one line; the same command then resumes and writes the report, whose numbers are
    recomputed here; a run trained alone with the same options is bit-identical to the study's; records are
    reused from a fresh clone and redone when their segmenter differs."""
    runs, out = tmp_path / "runs", tmp_path / "report"
    args = [*QUICK, "--dataroot", str(synthetic_root), "--checkpoints-dir", str(runs), "--out", str(out),
            "--segmenter-dir", str(tiny_segmenters)]
    hooks, marks = tmp_path / "hooks", tmp_path / "marks"
    hooks.mkdir(), marks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOOK)
    env = dict(os.environ, STUDY_MARKS=str(marks), PYTHONPATH=os.pathsep.join([str(hooks), str(REPO)]))
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
        "interrupted by SIGTERM: 12 of 12 jobs not done (those running saved and stopped); the same command resumes"]
    children = {int(p.suffix[1:]) for p in marks.glob("step2.*")}
    assert len(children) == 2 and not any(pid_alive(pid) for pid in children)  # no orphan goes on training
    for name in ("adam_seed0", "tradam_seed0"):  # the two under way (seed by seed) saved, unfinished
        state = load_checkpoint(runs / name / "latest.pt")
        assert not state["finished"] and state["step"] == 2  # saved right after the step under way
    assert not (runs / "adam_seed1").exists()

    assert study_cli.main(args) == 0, capsys.readouterr().err  # the same command resumes
    check_the_report(out, runs)
    report = json.loads((out / "study.json").read_text())
    check_a_run_alone_is_bit_identical(report, runs, tmp_path / "alone")
    check_the_records(args, report, runs, out, tmp_path, capsys)


def check_the_report(out: Path, runs: Path) -> None:
    """The report's files, and its numbers recomputed from the per-run numbers."""
    for name in ("study.md", "study.json", "learning_curves.png", "noise.png", "paired.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "study.json").read_text())
    assert set(report["train_options"]) == {"adam_seed0", "adam_seed1", "tradam_seed0", "tradam_seed1"}
    tested = {h["name"]: h for h in report["confirmatory"]["hypotheses"]}
    assert list(tested) == ["H1", "H4"]  # the design has no tradam_adam_step, no adam_matched
    iou = report["per_run"]["fcn8s:class_iou"]
    diffs = [iou[f"tradam_seed{s}"] - iou[f"adam_seed{s}"] for s in (0, 1)]
    assert tested["H1"]["mean"] == pytest.approx(sum(diffs) / 2)
    assert tested["H1"]["p"] == (0.5 if diffs[0] * diffs[1] > 0 and diffs[0] != 0 else 1.0)  # 2 seeds: 4 patterns
    assert tested["H1"]["p_holm"] == pytest.approx(min(1.0, max(holm([tested["H1"]["p"], tested["H4"]["p"]])[0],
                                                                tested["H1"]["p"])))
    by_k = report["noise_by_k"]["tradam"]
    assert set(by_k) == {"0", "1"}  # S = 2 in the quick preset: every position probed
    assert by_k["0"]["direction_ratio"] == pytest.approx(by_k["0"]["grad_ratio"])  # no pull at k = 0
    curves = report["curves"]["tradam_seed0"]
    assert [step for step, _ in curves["val_l1"]] == [4, 8]  # 4 train frames: epochs 1 and 2
    text = (out / "study.md").read_text()
    for words in ("## Confirmatory results", "Holm", "not the paper's experiment", "can and cannot conclude",
                  "Ground truth", "MDE", "no plan: every result below is exploratory", "inner position k"):
        assert words in text, words
    assert json.loads((runs / "tradam_seed1" / "options.json").read_text())["threads"] == 1


def check_a_run_alone_is_bit_identical(report: dict, runs: Path, alone: Path) -> None:
    """Trained alone here (not beside another job), a run of the same options is bit-identical."""
    options = list(report["train_options"]["tradam_seed1"])
    options[options.index("--checkpoints-dir") + 1] = str(alone)
    assert train.main([*options, "--overwrite"]) == 0
    mine, theirs = load_checkpoint(alone / "tradam_seed1" / "latest.pt"), load_checkpoint(runs / "tradam_seed1" / "latest.pt")
    for net in ("netG", "netD"):
        for key, value in theirs[net].items():
            assert torch.equal(mine[net][key], value), f"{net}.{key}"


def check_the_records(args: list, report: dict, runs: Path, out: Path, tmp_path: Path, capsys) -> None:
    """Stopped early, only scored runs are recorded; a second call reuses everything; from a fresh clone (no run
    folder) nothing is trained again and the report is the same to the last bit; a record whose segmenter
    differs is redone and gives the same numbers."""
    config, _ = study_cli.parse_args([*args, "--out", str(tmp_path / "partial")])
    arms, stored = study_design.study_arms(config), study_runs.stored_records(config)
    _, commands = study_jobs.study_jobs(config, arms, stored)
    scored = study_jobs.result_folders(config, "adam_seed0")[0] / "results.json"
    scored.rename(tmp_path / "aside.json")
    study_runs.write_records(config, arms, stored, commands, only_scored=True)
    assert sorted(p.name for p in stored.folder.glob("*.json")) == [
        "adam_seed1.json", "tradam_seed0.json", "tradam_seed1.json"]
    (tmp_path / "aside.json").rename(scored)
    capsys.readouterr()
    assert study_cli.main(args) == 0
    assert capsys.readouterr().out.count("up to date") == 12
    records = out / "runs"
    record = json.loads((records / "tradam_seed1.json").read_text())
    assert record["final"]["fcn8s"]["class_iou"] == report["per_run"]["fcn8s:class_iou"]["tradam_seed1"]
    assert "--checkpoints-dir" not in record["key"]["train_options"] and record["key"]["torch"] == torch.__version__
    assert record["finished"] and record["scored_as"] == "latest.pt"
    shutil.rmtree(runs)
    assert study_cli.main(args) == 0
    assert capsys.readouterr().out.count("up to date") == 12 and not (runs / "adam_seed0").exists()
    assert json.loads((out / "study.json").read_text()) == report
    record = json.loads((records / "adam_seed1.json").read_text())
    record["scorers"]["fcn8s"]["sha256"] = "0" * 64
    study_records_write(records, record)
    assert study_cli.main(args) == 0
    said = capsys.readouterr().out
    assert "train adam_seed1: done" in said and said.count("up to date") == 9
    assert json.loads((out / "study.json").read_text()) == report


def study_records_write(folder: Path, record: dict) -> None:
    """Write a record as the study does (with its digest), e.g. after changing what it says."""
    from experiments.study.records import write_record
    write_record(folder, {k: v for k, v in record.items() if k != "digest"})


def test_list_jobs_prints_every_command_of_the_plan_one_a_line(tiny_segmenters, capsys):
    assert study_cli.main(["--list-jobs", "--seeds", "100", "101", "--segmenter-dir", str(tiny_segmenters)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 * 2 * 3  # the plan's four arms, two seeds here: a training and two scorings each
    first = shlex.split(lines[0])
    assert first[1].endswith("train.py") and first[first.index("--name") + 1] == "adam_seed100"
    assert "--noise-freq" in first and first[first.index("--noise-probe") + 1] == "32"
    scored = shlex.split(lines[1])
    assert scored[1].endswith("evaluate.py") and "--overwrite" in scored
    assert any("tradam_adam_step_seed101" in line for line in lines)


def test_bad_arms_and_seeds_are_one_line(capsys):
    assert study_cli.main(["--arms", "tradam"]) == 2
    assert "'adam' must be one of them" in capsys.readouterr().err
    assert study_cli.main(["--arms", "adam", "lion"]) == 2
    assert "unknown arm 'lion'" in capsys.readouterr().err
    assert study_cli.main(["--seeds", "3"]) == 2


def test_the_demo_study_scores_with_the_shipped_demo_segmenters_and_trains_none():
    assert study_design.PRESETS["demo"]["segmenter_dir"] == "checkpoints/segmenters/demo"
    config, _ = study_cli.parse_args([])
    jobs, _ = study_jobs.study_jobs(config, study_design.study_arms(config), study_runs.stored_records(config))
    assert not [job for job in jobs if "train_segmenter" in " ".join(map(str, job.command if not callable(job.command)
                                                                          else ()))]
    assert {job.name.split()[0] for job in jobs} == {"train", "score", "curves"}
    assert study_jobs.study_scorers(config) == ["fcn8s", "deeplabv3plus_resnet10t"]


def test_the_commands_it_runs_take_the_options_it_passes(tiny_segmenters, tmp_path):
    config = study_design.StudyConfig(checkpoints_dir=str(tmp_path / "runs"), device="cuda:1", dataroot="data", jobs=2,
                                      threads=3, seeds=(3, 4), out=str(tmp_path / "report"), noise_freq=800,
                                      segmenter_dir=str(tiny_segmenters), train_args=["--preset", "demo"])
    arms = [study_design.make_arms(2e-4, 0.999)[a] for a in ("adam", "tradam")]
    trainings, commands = study_jobs.train_jobs(config, arms)
    assert [job.name for job in trainings] == ["train adam_seed3", "train tradam_seed3", "train adam_seed4",
                                               "train tradam_seed4"]  # seed by seed
    assert trainings[0].done_statuses == (0, 1)  # a run that diverges is done: it is scored as its last epoch
    run = train.parse_args(list(trainings[3].command[2:]))
    assert (run.checkpoints_dir, run.device, run.seed, run.dataroot, run.threads, run.optim, run.overwrite) == (
        config.checkpoints_dir, "cuda:1", 4, "data", 3, "tradam", True)
    assert (run.noise_freq, run.noise_probe, run.preset) == (800, 32, "demo")
    jobs, _ = study_jobs.study_jobs(config, arms, study_runs.stored_records(config))
    by_name = {job.name: job for job in jobs}
    assert list(by_name)[:3] == ["train adam_seed3", "score adam_seed3", "curves adam_seed3"]  # scored when trained
    assert by_name["score tradam_seed3"].after == ("train tradam_seed3",)
    run_dir = tmp_path / "runs" / "tradam_seed3"
    run_dir.mkdir(parents=True)
    for epoch in (1, 2):
        (run_dir / f"epoch_{epoch:03d}.pt").touch()
    scored = parse_config(list(by_name["score tradam_seed3"].command()[2:]))
    final, curves = study_jobs.result_folders(config, "tradam_seed3")
    assert (scored.checkpoints_dir, scored.device, scored.out, scored.overwrite) == (
        config.checkpoints_dir, "cuda:1", str(final), True)
    assert scored.generator == [str(run_dir / "epoch_002.pt")]  # not finished (it diverged): its last epoch file
    assert scored.segmenter_dir == str(tiny_segmenters)
    curve = parse_config(list(by_name["curves tradam_seed3"].command()[2:]))
    assert (curve.generator, curve.segmenters, curve.out) == (
        [str(run_dir / "epoch_001.pt"), str(run_dir / "epoch_002.pt")], ["fcn8s"], str(curves))
    assert by_name["curves adam_seed4"].skip()  # no epoch files: nothing to score


def test_bad_jobs_and_threads_are_one_line(tmp_path, capsys):
    assert study_cli.main(["--jobs", "0", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "error: --jobs must be >= 1, got 0\n"
    assert study_cli.main(["--threads", "0", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "error: --threads must be >= 1, got 0\n"


def test_former_checkpoints_spelling_and_device_names(tmp_path, capsys):
    assert study_cli.parse_args(["--checkpoints", "runs"])[0].checkpoints_dir == "runs"
    assert capsys.readouterr().err == "note: --checkpoints is now spelled --checkpoints-dir\n"
    assert study_cli.main(["--device", "tpu", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "error: --device tpu: expected auto, cpu, cuda or cuda:N\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_a_second_study_writing_the_same_out_is_refused_at_once(synthetic_root, tiny_segmenters, tmp_path):
    """One study at a time writes an --out (its records and report): while another holds it, a second one
    says so in one line, exit 2, and trains nothing."""
    from common.outputs import OutputLock
    out, runs = tmp_path / "report", tmp_path / "runs"
    lock = OutputLock(out, "--out")  # the first study, writing
    try:
        result = subprocess.run([sys.executable, "-m", "experiments.study", *QUICK, "--dataroot", str(synthetic_root),
                                 "--checkpoints-dir", str(runs), "--out", str(out), "--segmenter-dir",
                                 str(tiny_segmenters)], cwd=REPO, capture_output=True, text=True, timeout=600)
    finally:
        lock.release()
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: --out {out}: being written by process")
    assert not runs.exists() and not (out / "runs").exists()


@pytest.mark.e2e
def test_a_truncated_run_stops_the_study_with_one_line(synthetic_root, tiny_segmenters, tmp_path):
    """A run whose latest.pt was cut short: the study says so in one line naming the file, exit 2, and
    starts no run."""
    runs = tmp_path / "runs"
    run = runs / "adam_seed0"
    run.mkdir(parents=True)
    (run / "latest.pt").write_bytes(b"PK\x03\x04 cut short")
    result = subprocess.run([sys.executable, "-m", "experiments.study", *QUICK, "--arms", "adam", "tradam", "--jobs", "1",
                             "--dataroot", str(synthetic_root), "--checkpoints-dir", str(runs),
                             "--out", str(tmp_path / "report"), "--segmenter-dir", str(tiny_segmenters)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {run / 'latest.pt'}: cannot be read as a checkpoint")
    assert not (runs / "adam_seed1").exists() and not (runs / "tradam_seed0").exists() and not (tmp_path / "report" / "study.md").exists()
