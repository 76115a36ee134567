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


def test_fid_and_kid_join_the_evaluation_only_with_inception_weights(tmp_path):
    weights = tmp_path / "inception.pth"
    without = demo.demo_jobs(tmp_path / "ck", tmp_path / "seg", tmp_path / "results", threads=1)[-1]
    with_weights = demo.demo_jobs(tmp_path / "ck", tmp_path / "seg", tmp_path / "results", threads=1,
                                  inception_weights=weights)[-1]
    assert not evaluate.parse_args(list(without.command[2:])).fid
    scored = evaluate.parse_args(list(with_weights.command[2:]))
    assert (scored.fid, scored.kid, scored.inception_weights, scored.kid_subset_size) == (
        True, True, str(weights), demo.KID_SUBSET_SIZE)


def test_the_demo_repeats_only_this_evaluations_skipping_lines(tmp_path):
    log = tmp_path / "evaluate.log"
    log.write_text("skipping old line\n")
    offset = log.stat().st_size
    with open(log, "a") as file:
        file.write("$ evaluate.py ...\nskipping DRN-D-105: no file\nTable 2\n")
    assert demo.skipped_tables(log, offset) == "skipping DRN-D-105: no file\n"
    assert demo.skipped_tables(tmp_path / "absent.log", 0) == ""
