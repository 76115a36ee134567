"""`make demo`'s jobs: the commands take the options they are given, the evaluation waits for the rest."""
import evaluate
import train
from eval import demo, train_segmenter


def test_the_demo_jobs_and_their_commands(tmp_path):
    jobs = demo.demo_jobs(tmp_path / "ck", tmp_path / "ck" / "segmenters" / "demo", tmp_path / "results", threads=1)
    assert [job.name for job in jobs] == ["train demo_adam_seed0", "train demo_tradam_seed0", "scorer fcn8s",
                                          "scorer deeplabv3plus_xception71", "evaluate"]
    assert all(not job.after for job in jobs[:4]) and jobs[4].after == tuple(job.name for job in jobs[:4])
    run = train.parse_args(list(jobs[1].command[2:]))
    assert (run.optim, run.threads, run.checkpoints_dir, run.overwrite, run.name) == (
        "tradam", 1, str(tmp_path / "ck"), True, "demo_tradam_seed0")
    scorer = train_segmenter.parse_args(list(jobs[3].command[3:]))
    assert (scorer.arch, scorer.threads, scorer.out) == (
        "deeplabv3plus_xception71", 1, str(tmp_path / "ck" / "segmenters" / "demo" / "deeplabv3plus_xception71.pt"))
    scored = evaluate.parse_args(list(jobs[4].command[2:]))
    assert (scored.runs, scored.segmenter_dir, scored.out) == (
        ["demo_adam_seed0", "demo_tradam_seed0"], str(tmp_path / "ck" / "segmenters" / "demo"),
        str(tmp_path / "results"))
    assert not jobs[0].skip() and not jobs[2].skip()  # nothing trained yet


def test_bad_jobs_is_one_line(capsys):
    assert demo.main(["--jobs", "0"]) == 2
    assert capsys.readouterr().err == "error: --jobs must be >= 1, got 0\n"
