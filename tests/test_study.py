"""The seeds study through its real command at tiny sizes, and its statistics on known numbers."""
import json
import math

import pytest

import evaluate
import train
from eval import study
from eval.statistics import paired_difference


def test_arms_are_the_documented_controls():
    arms = study.make_arms(2e-4, 0.999)
    assert study.MEAN_INNER_FACTOR == pytest.approx(sum(1 / k for k in range(1, 11)) / 10)  # H_10/10 = 0.2929
    assert arms["adam_matched"].options == ("--optim", "adam", "--lr", f"{2e-4 * 0.2928968:.6g}")
    assert arms["tradam_flat"].options == ("--optim", "tradam", "--no-inner-decay")
    beta2 = float(arms["adam_beta2"].options[-1])
    # Half-life in samples kept: at batch 16 one step of β2 = 0.999 spans 16 samples at batch size 1.
    assert beta2 ** 16 == pytest.approx(0.999, abs=1e-8)


def test_analysis_pairs_by_seed_on_known_numbers():
    arms = [study.Arm("adam", "Adam", ()), study.Arm("tradam", "TRAdam", ())]
    values = {"m": {"adam_seed0": 0.50, "adam_seed1": 0.60, "adam_seed2": 0.55,
                    "tradam_seed0": 0.52, "tradam_seed1": 0.63, "tradam_seed2": 0.56}}
    result = study.analyse(arms, (0, 1, 2), values)["m"]
    assert result["summary"]["adam"]["mean"] == pytest.approx(0.55)
    assert result["summary"]["tradam"]["std"] == pytest.approx(math.sqrt(((0.52 - 0.57) ** 2 + 0.06 ** 2 + 0.01 ** 2) / 2))
    diff = result["vs_baseline"]["tradam"]
    assert diff["diffs"] == pytest.approx([0.02, 0.03, 0.01])
    assert (diff["low"], diff["high"]) == pytest.approx((0.01, 0.03)) and diff["significant"]
    assert diff == paired_difference(result["per_seed"]["tradam"], result["per_seed"]["adam"])


@pytest.mark.e2e
def test_quick_study_through_the_command(synthetic_root, tmp_path, capsys):
    out = tmp_path / "report"
    code = study.main(["--preset", "quick", "--arms", "adam", "tradam", "--seeds", "0", "1",
                       "--dataroot", str(synthetic_root), "--checkpoints-dir", str(tmp_path / "runs"),
                       "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    for name in ("study.md", "study.json", "learning_curves.png", "noise.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "study.json").read_text())
    assert set(report["train_options"]) == {"adam_seed0", "adam_seed1", "tradam_seed0", "tradam_seed1"}
    assert "--seed" in report["train_options"]["tradam_seed1"] and "tradam" in report["train_options"]["tradam_seed1"]
    # The paired difference in the report is recomputed here from the per-run numbers.
    per_run = report["per_run"]["fcn8s:class_iou"]
    diffs = [per_run[f"tradam_seed{s}"] - per_run[f"adam_seed{s}"] for s in (0, 1)]
    reported = report["analysis"]["fcn8s:class_iou"]["vs_baseline"]["tradam"]
    assert reported["diffs"] == pytest.approx(diffs)
    assert reported["mean"] == pytest.approx(sum(diffs) / 2)
    assert (reported["low"], reported["high"]) == pytest.approx((min(diffs), max(diffs)))  # n = 2: 4 resamples
    curves = report["curves"]["tradam"]["0"]
    assert [step for step, _ in curves["val_l1"]] == [4, 8]  # 4 train frames: epochs 1 and 2
    assert report["noise"]["tradam"]["0"]["direction_ratio"]
    text = (out / "study.md").read_text()
    assert "Paired differences to Adam" in text and "Ground truth" in text
    # A second call reuses every run and scorer.
    assert study.main(["--preset", "quick", "--arms", "adam", "tradam", "--seeds", "0", "1",
                       "--dataroot", str(synthetic_root), "--checkpoints-dir", str(tmp_path / "runs"),
                       "--out", str(out), "--device", "cpu"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_bad_arms_and_seeds_are_one_line(capsys):
    assert study.main(["--arms", "tradam"]) == 2
    assert "'adam' must be one of them" in capsys.readouterr().err
    assert study.main(["--arms", "adam", "lion"]) == 2
    assert "unknown arm 'lion'" in capsys.readouterr().err
    assert study.main(["--seeds", "3"]) == 2


def test_the_demo_study_scores_with_the_demo_scorers():
    """One pair of built-in-city scorers: the study trains exactly `make demo`'s (the ones that rank)."""
    from eval import train_segmenter
    assert study.PRESETS["demo"]["segmenters"] == {arch: ["--preset", "demo"]
                                                  for arch in train_segmenter.PRESETS["demo"]}


def test_the_commands_it_runs_take_the_options_it_passes(tmp_path, monkeypatch):
    config = study.StudyConfig(checkpoints_dir=str(tmp_path / "runs"), device="cuda:1", dataroot="data")
    run = train.parse_args(study.train_options(config, study.make_arms(2e-4, 0.999)["tradam"], 3))
    assert (run.checkpoints_dir, run.device, run.seed, run.dataroot) == (config.checkpoints_dir, "cuda:1", 3, "data")
    commands = []

    def run_command(args):
        commands.append(args)
        (tmp_path / "results.json").write_text("{}")
    monkeypatch.setattr(study, "run_command", run_command)
    study.evaluate_generators(config, [tmp_path / "g.pt"], ["adam_seed0"], tmp_path, ["fcn8s"])
    scored = evaluate.parse_args(commands[0][1:])
    assert (scored.checkpoints_dir, scored.device, scored.runs, scored.generator, scored.segmenters) == (
        config.checkpoints_dir, "cuda:1", ["adam_seed0"], [str(tmp_path / "g.pt")], ["fcn8s"])
    assert scored.segmenter_dir == str(tmp_path / "runs" / "segmenters")


def test_former_checkpoints_spelling_and_device_names(tmp_path, capsys):
    assert study.parse_args(["--checkpoints", "runs"]).checkpoints_dir == "runs"
    assert capsys.readouterr().err == "note: --checkpoints is now spelled --checkpoints-dir\n"
    assert study.main(["--device", "tpu", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "error: --device tpu: expected auto, cpu, cuda or cuda:N\n"
    assert not (tmp_path / "out").exists()
