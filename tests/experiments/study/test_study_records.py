"""experiments.study.records: what makes a stored run record stale, and what survives the JSON round trip."""
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from experiments.study.records import (
    RECORD_VERSION,
    StoredRecords,
    code_sha256,
    matches,
    read_record,
    run_key,
    weights_sha256,
    write_record,
)

REPO = Path(__file__).resolve().parents[3]


def copy_of_the_code(root: Path) -> Path:
    """A copy of the checkout's Python packages and scripts under ``root`` (what the code key reads)."""
    root.mkdir()
    for script in ("train.py", "evaluate.py"):
        shutil.copy(REPO / script, root / script)
    for package in ("common", "data", "gan", "training", "eval", "tralgo", "experiments"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def edit(path: Path, old: str, new: str) -> bytes:
    """Replace ``old`` (which must be there once) by ``new`` in ``path``; returns the former bytes."""
    original = path.read_bytes()
    text = original.decode()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))
    return original


def test_the_code_key_keeps_a_change_of_words_and_moves_with_a_change_of_code(tmp_path):
    root = copy_of_the_code(tmp_path / "repo")
    base = code_sha256(root)
    assert base == code_sha256(REPO)  # only the Python files count, not caches or other files
    (root / "eval" / "notes.txt").write_text("not code")
    words = [("gan/pix2pix.py", '"""The pix2pix model (Isola et al. 2017)', '"""The pix2pix model (Isola and others, 2017)'),
             ("gan/pix2pix.py", "        # D step: fake pairs labelled fake, real pairs real.",
              "        # the discriminator's step"),
             ("eval/segmenters/fcn8s.py", "    def check(self) -> None:\n        \"\"\"",
              "    def check(self) -> None:\n        \"\"\"Reworded. "),
             ("experiments/study/report.py", "def measure_title(", "def measure_heading("),  # not run by a run
             ("experiments/demo.py", "KID_SUBSET_SIZE = 25", "KID_SUBSET_SIZE = 24")]
    for relative, old, new in words:
        original = edit(root / relative, old, new)
        assert code_sha256(root) == base, (relative, old)
        (root / relative).write_bytes(original)
    code = [("gan/pix2pix.py", "loss_D = 0.5 * (loss_D_fake + loss_D_real)", "loss_D = 0.25 * (loss_D_fake + loss_D_real)"),
            ("training/noise.py", "variance = self.sum_sq_dev / (self.count - 1)", "variance = self.sum_sq_dev / self.count"),
            ("eval/segmenters/base.py", "IMAGENET_MEAN = (0.485, 0.456, 0.406)", "IMAGENET_MEAN = (0.485, 0.456, 0.407)"),
            ("eval/metrics.py", "def _nanmean(", "def _nan_mean("),
            ("tralgo/tradam.py", "exp_avg.lerp_(d, 1 - beta1)", "exp_avg.lerp_(d, 1.0 - beta1)")]
    for relative, old, new in code:
        original = edit(root / relative, old, new)
        assert code_sha256(root) != base, (relative, old)
        (root / relative).write_bytes(original)
    assert code_sha256(root) == base


def test_the_weights_key_is_the_tensors_not_the_file_around_them():
    torch.manual_seed(0)
    state = {"b.weight": torch.randn(3, 4), "a.bias": torch.randn(4), "n.num_batches_tracked": torch.tensor(7)}
    digest = weights_sha256(state)
    assert weights_sha256(dict(reversed(list(state.items())))) == digest  # name order, not insertion order
    assert weights_sha256({k: v.clone() for k, v in state.items()}) == digest
    changed = {k: v.clone() for k, v in state.items()}
    changed["b.weight"][2, 3] = torch.nextafter(changed["b.weight"][2, 3], torch.tensor(math.inf))  # one ulp
    assert weights_sha256(changed) != digest
    assert weights_sha256({**state, "a.bias": state["a.bias"].double()}) != digest  # dtype counts
    assert weights_sha256({**state, "b.weight": state["b.weight"].reshape(4, 3)}) != digest  # shape counts


def test_a_run_key_ignores_the_output_folder_only():
    cpu = torch.device("cpu")
    options = ["--optim", "tradam", "--seed", "3", "--checkpoints-dir", "runs", "--threads", "1"]
    key = run_key(options, cpu, "c0de")
    assert key == run_key([*options[:5], "elsewhere", *options[6:]], cpu, "c0de")
    assert key["train_options"] == ["--optim", "tradam", "--seed", "3", "--threads", "1"]
    assert key["torch"] == torch.__version__ and key["device"] == "cpu"
    assert "device_name" not in key  # the CPU model is kept beside the key (recorded_on), not in it
    assert key != run_key(options, cpu, "c0df") and key != run_key(options, cpu, "c0de", data="abc")
    assert key != run_key([*options[:3], "4", *options[4:]], cpu, "c0de")


def record(name="adam_seed0", key=None, fcn="f" * 64):
    return {"version": RECORD_VERSION, "key": key or {"k": 1}, "name": name,
            "scorers": {"fcn8s": {"sha256": fcn, "display_name": "FCN-8s",
                                  "ground_truth": {"class_iou": 0.5, "per_class_iou": [0.5, math.nan]}}},
            "final": {"fcn8s": {"class_iou": math.nan, "per_class_iou": [0.1, math.nan], "confusion": [[1, 0], [0, 1]]}},
            "val_l1": 0.25, "curve": {"val_l1": [(200, 0.3)], "class_iou": [(200, math.nan)]},
            "noise": {"grad_ratio": [(250, 1.5), (500, math.nan)]}}


def test_a_record_reads_back_with_its_nans_and_a_broken_one_is_redone(tmp_path):
    write_record(tmp_path, record())
    back = read_record(tmp_path, "adam_seed0")
    assert math.isnan(back["final"]["fcn8s"]["class_iou"]) and math.isnan(back["final"]["fcn8s"]["per_class_iou"][1])
    assert math.isnan(back["scorers"]["fcn8s"]["ground_truth"]["per_class_iou"][1])
    assert back["curve"]["val_l1"] == [(200, 0.3)] and math.isnan(back["curve"]["class_iou"][0][1])
    assert back["noise"]["grad_ratio"][0] == (250, 1.5) and back["final"]["fcn8s"]["confusion"] == [[1, 0], [0, 1]]
    assert read_record(tmp_path, "missing") is None
    (tmp_path / "cut.json").write_text(json.dumps(record(name="cut"))[:100])
    assert read_record(tmp_path, "cut") is None
    (tmp_path / "old.json").write_text(json.dumps({**record(name="old"), "version": 0}))
    assert read_record(tmp_path, "old") is None


def test_a_record_is_reused_only_with_the_same_key_and_the_same_scorers(tmp_path):
    scorer = tmp_path / "fcn8s.pt"
    weights = {"w": torch.arange(6.0)}
    torch.save({"state_dict": weights, "metadata": {"trained_seconds": 12.5}}, scorer)
    stored = StoredRecords(tmp_path / "runs", "cpu", "c0de", None, {"fcn8s": scorer})
    options = ["--optim", "adam", "--seed", "0"]
    write_record(stored.folder, record(key=stored.key(options), fcn=weights_sha256(weights)))
    assert stored.pending("adam_seed0", options) and stored.usable("adam_seed0", options) is not None
    assert not stored.pending("adam_seed0", ["--optim", "adam", "--seed", "1"])  # another run's options
    assert not stored.pending("adam_seed1", options)  # no record
    other = StoredRecords(tmp_path / "runs", "cpu", "c0de", None, {"fcn8s": scorer, "deeplab": scorer})
    assert other.pending("adam_seed0", options) and other.usable("adam_seed0", options) is None  # another scorer set
    torch.save({"state_dict": {"w": torch.arange(6.0) + 1}, "metadata": {}}, scorer)
    retrained = StoredRecords(tmp_path / "runs", "cpu", "c0de", None, {"fcn8s": scorer})
    assert retrained.usable("adam_seed0", options) is None  # the scorer's weights differ
    assert stored.usable("adam_seed0", options) is not None  # the hash is taken once per call
    assert not matches(None, {}) and matches(record(), {"k": 1}) and not matches(record(), {"k": 2})


def test_a_record_written_on_another_cpu_model_is_reused_and_the_report_counts_the_models(tmp_path):
    from experiments.study.report import machine_counts
    scorer = tmp_path / "fcn8s.pt"
    weights = {"w": torch.arange(6.0)}
    torch.save({"state_dict": weights, "metadata": {}}, scorer)
    stored = StoredRecords(tmp_path / "runs", "cpu", "c0de", None, {"fcn8s": scorer})
    options = ["--optim", "adam", "--seed", "0"]
    write_record(stored.folder, {**record(key=stored.key(options), fcn=weights_sha256(weights)),
                                 "recorded_on": "Some Other CPU"})
    assert stored.usable("adam_seed0", options)["recorded_on"] == "Some Other CPU"
    by_run = {"adam_seed0": {"recorded_on": "B"}, "tradam_seed0": {"recorded_on": "A"},
              "adam_seed1": {"recorded_on": "B"}}
    assert list(machine_counts(by_run).items()) == [("B", 2), ("A", 1)]


def test_a_record_edited_by_hand_is_redone_with_one_line(tmp_path, capsys):
    scorer = tmp_path / "fcn8s.pt"
    weights = {"w": torch.arange(6.0)}
    torch.save({"state_dict": weights, "metadata": {}}, scorer)
    stored = StoredRecords(tmp_path / "runs", "cpu", "c0de", None, {"fcn8s": scorer})
    options = ["--optim", "adam", "--seed", "0"]
    path = write_record(stored.folder, record(key=stored.key(options), fcn=weights_sha256(weights)))
    assert stored.usable("adam_seed0", options) is not None
    edited = json.loads(path.read_text())
    edited["final"]["fcn8s"]["pixel_acc"] = 0.999  # a better number typed in
    path.write_text(json.dumps(edited))
    assert stored.usable("adam_seed0", options) is None and not stored.pending("adam_seed0", options)
    assert capsys.readouterr().out == (f"{path}: its numbers do not match the digest written with them (edited "
                                       f"since?); its run is trained and scored again\n")  # said once


def test_while_the_study_is_being_made_its_committed_records_are_of_this_code():
    """Until docs/study/study.md is written, every committed record must stay reusable: a change to the code
    that trains and scores (not to its words) would make them stale and the study start again. Finish the
    study, or make such a change in its own round once it is done."""
    folder = REPO / "docs" / "study"
    records = [json.loads(path.read_text()) for path in sorted((folder / "runs").glob("*.json"))]
    if (folder / "study.md").is_file() or not records:
        pytest.skip("no study under way")
    assert {record["key"]["code_sha256"] for record in records} == {code_sha256(REPO)}
