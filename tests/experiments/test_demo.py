"""`make demo`'s jobs: the commands take the options they are given, the evaluation waits for the runs and
scores with the shipped segmenters; what would fail only after the runs is refused before they start."""
import pytest

import train
from common.command_line import InputError
from eval.config import parse_config
from experiments import demo, scorers


def test_the_demo_jobs_and_their_commands(tmp_path):
    segmenters = demo.SHIPPED_SEGMENTERS
    jobs = demo.demo_jobs(tmp_path / "ck", segmenters, tmp_path / "results", threads=1)
    assert [job.name for job in jobs] == ["train demo_adam_seed0", "train demo_tradam_seed0", "evaluate"]
    assert all(not job.after for job in jobs[:2]) and jobs[2].after == tuple(job.name for job in jobs[:2])
    run = train.parse_args(list(jobs[1].command[2:]))
    assert (run.optim, run.threads, run.checkpoints_dir, run.overwrite, run.name) == (
        "tradam", 1, str(tmp_path / "ck"), True, "demo_tradam_seed0")
    scored = parse_config(list(jobs[2].command[2:]))
    assert (scored.runs, scored.segmenter_dir, scored.segmenters, scored.out) == (
        ["demo_adam_seed0", "demo_tradam_seed0"], str(segmenters), ["fcn8s", "deeplabv3plus_resnet10t"],
        str(tmp_path / "results"))
    assert not jobs[0].skip() and not jobs[1].skip()  # nothing trained yet
    assert not scored.fid


def test_bad_jobs_is_one_line(capsys):
    assert demo.main(["--jobs", "0"]) == 2
    assert capsys.readouterr().err == "error: --jobs must be >= 1, got 0\n"


def test_what_would_fail_after_the_runs_is_refused_before_they_start(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert demo.main(["--out", str(tmp_path / "file" / "sub"), "--checkpoints-dir", str(tmp_path / "ck")]) == 2
    assert capsys.readouterr().err == (f"error: --out {tmp_path / 'file' / 'sub'}: {tmp_path / 'file'} exists and "
                                       f"is not a folder\n")
    assert not (tmp_path / "ck").exists()  # no job started
    with pytest.raises(InputError, match="the demo's segmenters are missing .*`make scorers` trains them"):
        demo.check_before_starting(tmp_path / "ck", tmp_path / "out", tmp_path / "no_segmenters")


def test_with_inception_weights_each_run_gets_a_fidelity_job_filling_the_cache_the_evaluation_reads(tmp_path):
    weights, checkpoints = tmp_path / "inception.pth", tmp_path / "ck"
    jobs = demo.demo_jobs(checkpoints, tmp_path / "seg", tmp_path / "results", threads=1, inception_weights=weights)
    names = [job.name for job in jobs]
    assert names[2:] == ["fidelity demo_adam_seed0", "fidelity demo_tradam_seed0", "evaluate"]
    adam, tradam, final = jobs[2:]
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


def test_make_scorers_trains_each_demo_segmenter_with_its_preset_into_the_shipped_folder(tmp_path):
    from eval import train_segmenter
    jobs = scorers.scorer_jobs(tmp_path, threads=1)
    assert [job.name for job in jobs] == ["segmenter deeplabv3plus_resnet10t", "segmenter fcn8s"]
    for job, arch in zip(jobs, scorers.DEMO_SEGMENTERS):
        options = train_segmenter.parse_args(list(job.command[3:]))
        assert (options.arch, options.preset, options.weights_dtype, options.out, options.overwrite) == (
            arch, "demo", "float16", str(tmp_path / f"{arch}.pt"), True)
