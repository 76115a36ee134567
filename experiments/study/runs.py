"""Reading what a study run left: its scores, validation L1, learning curve, gradient-noise series (with each
probe's inner position k) and length, gathered into its record (:mod:`experiments.study.records`)."""
from __future__ import annotations

import json
from pathlib import Path

from common.checkpoint import load_checkpoint
from common.device import device_name, resolve_device
from common.files import shown_path
from data.fingerprint import files_fingerprint
from data.images import read_rgb
from eval.eval_sets import open_eval_set
from experiments.study.design import SEGMENTER_ORDER, Arm, StudyConfig, run_name
from experiments.study.jobs import final_generator, result_folders, scored, segmenter_folder, study_scorers
from experiments.study.records import RECORD_VERSION, StoredRecords, code_sha256, write_record
from gan.run_files import epoch_files, is_finished, latest_path


def validation_l1(images: Path, evalset) -> float:
    """Mean |generated − real| over the val frames, in [-1, 1] units (the L1 term of G's loss / λ)."""
    total = 0.0
    for i, name in enumerate(evalset.names):
        fake = read_rgb(images / f"{name}.png").float() / 127.5 - 1
        real = evalset.real_photo(i).float() / 127.5 - 1
        total += float((fake - real).abs().mean())
    return total / len(evalset.names)


def read_noise(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The run's TensorBoard ``noise/*`` scalars: name -> [(step, value)] (the last write of a step wins; a resumed
    run keeps what it wrote before its interruption: TensorBoard's purge of "orphaned" steps is off)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir / "events"), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    events.Reload()
    series = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith("noise/"):
            by_step = {e.step: e.value for e in events.Scalars(tag)}
            series[tag[len("noise/"):]] = sorted(by_step.items())
    return series


def run_length(run_dir: Path) -> tuple[int, int | None]:
    """(training steps, steps per epoch) of a run, from its latest checkpoint."""
    state = load_checkpoint(run_dir / "latest.pt")
    return state["step"], (state["step"] // state["epoch"] if state.get("epoch") else None)


def make_record(config: StudyConfig, arm: Arm, seed: int, key: dict, scorer_hashes: dict[str, str]) -> dict:
    """The record of a trained and scored run (:mod:`experiments.study.records`): its final FCN-scores by every
    segmenter (overall, per class, confusion matrix) and their ground-truth rows, validation L1, learning curve
    (validation L1 and class IoU by the first segmenter at every epoch file), gradient-noise series (each
    probe's step, k and ratios), length, and whether training finished (else it diverged: scored as its last
    epoch file)."""
    name = run_name(arm, seed)
    run_dir = Path(config.checkpoints_dir) / name
    final_folder, curve_folder = result_folders(config, name)
    [final] = read_results([final_folder])
    entries = {entry["arch"]: entry for entry in final["segmenters"]}
    scorers = [a for a in SEGMENTER_ORDER if a in entries] + sorted(a for a in entries if a not in SEGMENTER_ORDER)
    sets = {arch: entries[arch]["image_sets"][0] for arch in scorers}  # the one generator scored
    dataroot = sets[scorers[0]]["dataroot"]
    evalset = open_eval_set(dataroot)
    steps, per_epoch = run_length(run_dir)
    run_options = json.loads((run_dir / "options.json").read_text())
    return {"version": RECORD_VERSION, "key": key, "recorded_on": device_name(resolve_device(config.device)),
            "name": name, "arm": arm.name, "seed": seed, "steps": steps, "steps_per_epoch": per_epoch, "netG": run_options["netG"],
            "crop_size": run_options["crop_size"], "threads": run_options.get("threads"),
            "dataroot": shown_path(dataroot), "finished": is_finished(latest_path(run_dir)),
            "scored_as": Path(final_generator(run_dir)).name,
            "scorers": {arch: {"sha256": scorer_hashes[arch], "display_name": entries[arch]["display_name"],
                               "ground_truth": entries[arch]["ground_truth"][0]["scores"]}
                        for arch in scorers},
            "final": {arch: sets[arch]["scores"] for arch in scorers},
            "val_l1": validation_l1(Path(sets[scorers[0]]["images"]), evalset),
            "curve": learning_curve(run_dir, curve_folder, per_epoch, evalset), "noise": read_noise(run_dir)}


def learning_curve(run_dir: Path, curve_folder: Path, per_epoch: int | None, evalset) -> dict:
    """Validation L1 and class IoU (by the curve's segmenter) at each epoch file: {"val_l1": [(step, value)],
    "class_iou": [...]}."""
    scored_sets = {Path(s["checkpoint"]).resolve(): s for result in read_results([curve_folder])
                   for s in result["segmenters"][0]["image_sets"]}
    l1, iou = [], []
    for epoch, path in epoch_files(run_dir):
        curve_set = scored_sets.get(path.resolve())
        if curve_set is not None and per_epoch is not None:
            l1.append((epoch * per_epoch, validation_l1(Path(curve_set["images"]), evalset)))
            iou.append((epoch * per_epoch, curve_set["scores"]["class_iou"]))
    return {"val_l1": l1, "class_iou": iou}


def read_results(folders: list[Path]) -> list[dict]:
    """The results.json of each folder that has one."""
    return [json.loads((folder / "results.json").read_text()) for folder in folders
            if (folder / "results.json").is_file()]


def stored_records(config: StudyConfig) -> StoredRecords:
    """The records of ``<out>/runs`` and what this call needs to reuse one (device, code, data, scorers)."""
    data = None
    if config.dataroot:
        root = Path(config.dataroot)
        data = files_fingerprint([p for p in root.rglob("*") if p.is_file()], root)
    scorer_files = {arch: segmenter_folder(config) / f"{arch}.pt" for arch in study_scorers(config)}
    return StoredRecords(Path(config.out) / "runs", config.device, code_sha256(), data, scorer_files)


def write_records(config: StudyConfig, arms: list[Arm], records: StoredRecords, commands: dict,
                  only_scored: bool = False) -> None:
    """Write the record of every run without a reusable one (``only_scored``: of those trained and scored,
    when the jobs stopped early)."""
    for arm in arms:
        for seed in config.seeds:
            name = run_name(arm, seed)
            if only_scored and not scored(config, name):
                continue
            if records.usable(name, commands[name]) is None:
                write_record(records.folder, make_record(config, arm, seed, records.key(commands[name]),
                                                         records.scorer_hashes()))
