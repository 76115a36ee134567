"""`make demo`'s jobs: the commands take the options they are given, the evaluation waits for the rest."""
import train
from eval import train_segmenter
from eval.config import parse_config
from experiments import demo


def test_the_demo_jobs_and_their_commands(tmp_path):
    jobs = demo.demo_jobs(tmp_path / "ck", tmp_path / "ck" / "segmenters" / "demo", tmp_path / "results", threads=1)
    assert [job.name for job in jobs] == ["scorer deeplabv3plus_resnet10t", "train demo_adam_seed0",
                                          "train demo_tradam_seed0", "scorer fcn8s", "evaluate"]
    assert all(not job.after for job in jobs[:4]) and jobs[4].after == tuple(job.name for job in jobs[:4])
    run = train.parse_args(list(jobs[2].command[2:]))
    assert (run.optim, run.threads, run.checkpoints_dir, run.overwrite, run.name) == (
        "tradam", 1, str(tmp_path / "ck"), True, "demo_tradam_seed0")
    scorer = train_segmenter.parse_args(list(jobs[0].command[3:]))
    assert (scorer.arch, scorer.threads, scorer.out) == (
        "deeplabv3plus_resnet10t", 1, str(tmp_path / "ck" / "segmenters" / "demo" / "deeplabv3plus_resnet10t.pt"))
    scored = parse_config(list(jobs[4].command[2:]))
    assert (scored.runs, scored.segmenter_dir, scored.out) == (
        ["demo_adam_seed0", "demo_tradam_seed0"], str(tmp_path / "ck" / "segmenters" / "demo"),
        str(tmp_path / "results"))
    assert not jobs[0].skip() and not jobs[1].skip()  # nothing trained yet
    assert not parse_config(list(jobs[4].command[2:])).fid


def test_bad_jobs_is_one_line(capsys):
    assert demo.main(["--jobs", "0"]) == 2
    assert capsys.readouterr().err == "error: --jobs must be >= 1, got 0\n"


def test_with_inception_weights_each_run_gets_a_fidelity_job_filling_the_cache_the_evaluation_reads(tmp_path):
    weights, checkpoints = tmp_path / "inception.pth", tmp_path / "ck"
    jobs = demo.demo_jobs(checkpoints, tmp_path / "seg", tmp_path / "results", threads=1, inception_weights=weights)
    names = [job.name for job in jobs]
    assert names[4:] == ["fidelity demo_adam_seed0", "fidelity demo_tradam_seed0", "evaluate"]
    adam, tradam, final = jobs[4:]
    assert adam.after == ("train demo_adam_seed0",)  # it computes the real photos' features too
    assert tradam.after == ("train demo_tradam_seed0", "fidelity demo_adam_seed0")  # ... which this one reads
    assert final.after == tuple(names[:-1])
    cache = str(checkpoints / demo.FEATURES_DIR / "inception")
    for job, runs in ((adam, ["demo_adam_seed0"]), (tradam, ["demo_tradam_seed0"])):
        scored = parse_config(list(job.command[2:]))
        assert (scored.runs, scored.fidelity_only, scored.fid, scored.kid, scored.inception_cache) == (
            runs, True, True, True, cache)
    scored = parse_config(list(final.command[2:]))
    assert (scored.fidelity_only, scored.fid, scored.kid, scored.inception_weights, scored.kid_subset_size,
            scored.inception_cache, scored.batch_size) == (
        False, True, True, str(weights), demo.KID_SUBSET_SIZE, cache, parse_config([]).batch_size)
    for job in (adam, tradam):  # features are keyed by the batch size: every job must use the evaluation's
        assert parse_config(list(job.command[2:])).batch_size == scored.batch_size


def test_the_demo_repeats_only_this_evaluations_skipping_lines(tmp_path):
    log = tmp_path / "evaluate.log"
    log.write_text("skipping old line\n")
    offset = log.stat().st_size
    with open(log, "a") as file:
        file.write("$ evaluate.py ...\nskipping DRN-D-105: no file\nTable 2\n")
    assert demo.skipped_tables(log, offset) == "skipping DRN-D-105: no file\n"
    assert demo.skipped_tables(tmp_path / "absent.log", 0) == ""
