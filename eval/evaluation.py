"""evaluate.py's work: find or take the image sources, check everything that can fail before generating,
generate, score with every segmenter (and FID/KID), write the result files.

:func:`evaluate` takes an :class:`eval.config.EvalConfig`; each step is its module's (sources, eval_sets,
generation, tables, fidelity_table, results).
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from common.checkpoint import CheckpointError
from common.device import resolve_device
from common.outputs import hidden_copies_note, new_folder
from eval import EvalError
from eval.config import EvalConfig
from eval.drn_score import drn_eval_sets
from eval.fidelity_table import FidelityConfig, fidelity_entry, prepare_fidelity
from eval.generation import generate_all
from eval.results import write_outputs
from eval.segmenters.drn import ARCH as DRN_ARCH
from eval.sources import find_runs, given_sources, open_eval_sets
from eval.tables import ScoringConfig, load_segmenters, score_all
from gan import run_files
from gan.networks import check_image_size, load_generator


def evaluate(config: EvalConfig) -> Path:
    """Find or take the image sources, generate, score with every segmenter, write the outputs; returns --out.

    --out follows the output rule (:func:`common.outputs.new_folder`): apart from every input, one evaluation
    at a time, an earlier output replaced only with --overwrite and only once the new one is complete."""
    device, checkpoints, out = resolve_device(config.device), Path(config.checkpoints_dir), Path(config.out)
    for note in hidden_copies_note(checkpoints):  # runs an interrupted --overwrite set aside
        print(note, flush=True)
    sources = given_sources(config.generator, config.images, config.dataroot, config.generator_kwargs) \
        if (config.generator or config.images) else find_runs(checkpoints, config.runs)
    with new_folder(out, "--out", config.overwrite, evaluation_inputs(sources, config)) as work:
        report = evaluate_into(work, config, sources, device)
        write_outputs(relocated(report, work, out), sources, report["evalsets"], work, config.figure_frames)
    return out


def evaluate_into(work: Path, config: EvalConfig, sources: list, device) -> dict:
    """Every check, the generation into ``work`` and the scores: results.json's content (``evalsets`` beside)."""
    segmenters = [] if config.fidelity_only else load_segmenters(config.segmenters, config.segmenter_folder, device)
    evalsets = open_eval_sets(sources, config.protocol, config.size, config.max_val_frames)
    check_before_generating(sources, evalsets, config.size)
    if any(segmenter.arch == DRN_ARCH for segmenter in segmenters):  # its labels' layout, checked before any work
        drn_eval_sets(evalsets, config.drn_protocol)
    fidelity = FidelityConfig(config.fid, config.kid, config.inception_weights, config.inception_cache,
                              config.kid_subsets, config.kid_subset_size, config.batch_size)
    inception = prepare_fidelity(fidelity, sources, evalsets, device)
    if config.fidelity_only and inception is None:
        raise EvalError("--fidelity-only: nothing to compute without torch-fidelity's InceptionV3 weights")
    generate_all(sources, evalsets, work, not config.eval_mode, config.seed, device, config.amp)
    scoring = ScoringConfig(config.protocol, config.drn_protocol, config.fast_hist, config.batch_size, device,
                            config.amp)
    report = {"protocol": config.protocol, "histogram": "fast_hist" if config.fast_hist else "ours",
              "generation": "eval" if config.eval_mode else "test", "seed": config.seed,
              "datasets": {str(k): {"size": e.size, "frames": len(e)} for k, e in evalsets.items()},
              "segmenters": [score_all(segmenter, sources, evalsets, scoring) for segmenter in segmenters]}
    if inception is not None:
        report["fidelity"] = fidelity_entry(*inception, sources, evalsets, fidelity)
    return {**report, "evalsets": evalsets}


def relocated(report: dict, work: Path, out: Path) -> dict:
    """``report`` (without its ``evalsets``) with the paths into the hidden folder ``work`` as they will be once
    it is ``out``."""
    def move(value):
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [move(v) for v in value]
        if isinstance(value, (str, Path)) and Path(value).is_relative_to(work):
            return out / Path(value).relative_to(work)
        return value
    return move({k: v for k, v in report.items() if k != "evalsets"})


def evaluation_inputs(sources, config: EvalConfig) -> dict[Path, str]:
    """What evaluate.py reads, for the output rule: datasets, generator files and run folders, image folders,
    segmenters."""
    inputs = {} if config.fidelity_only else {config.segmenter_folder: "--segmenter-dir"}
    for source in sources:
        inputs[source.dataroot] = "--dataroot"
        if source.checkpoint is not None:  # a generator file, or a run's folder
            inputs[source.checkpoint if config.generator else source.checkpoint.parent] = \
                "--generator" if config.generator else "--checkpoints-dir (a run)"
        elif source.images is not None:
            inputs[source.images] = "--images"
    return inputs


def check_before_generating(sources, evalsets: dict, given_size: int | None) -> None:
    """What would fail only after generating, checked first: every label map to score against holds trainIds
    (read now, kept for scoring), every generator file holds a generator whose weights fit its architecture
    (one line naming the file otherwise), and every generator suits the image size."""
    for evalset in evalsets.values():
        if evalset.protocol != "fullres":
            for i in range(len(evalset)):
                evalset.label(i)  # data.aligned checks the values of each trainId map it reads
        else:  # full-size labelIds: any id maps to a trainId or ignore; the file's header is what can be wrong
            for path in evalset.full_label_paths.values():
                check_label_ids_header(path)
    for source in sources:
        if source.checkpoint is None:
            continue
        load_generator(source.checkpoint, **source.generator_kwargs)  # readable, a generator, weights that fit
        evalset = evalsets[source.dataroot.resolve()]
        try:
            check_image_size(generator_name(source), evalset.size)
        except ValueError as error:
            where = f"--size {given_size}" if given_size else f"{evalset.dataroot}: its {evalset.size}-pixel images"
            raise EvalError(f"{where}: {error} ({source.checkpoint})") from None


def check_label_ids_header(path: Path) -> None:
    """EvalError naming ``path`` unless it is a readable single-channel image (a gtFine labelIds PNG)."""
    try:
        with Image.open(path) as image:
            mode = image.mode
    except (OSError, ValueError) as error:
        raise EvalError(f"{path}: not a readable labelIds image ({error})") from None
    if mode not in ("L", "P", "I", "I;16"):
        raise EvalError(f"{path}: expected a single-channel labelIds image, got mode {mode}")


def generator_name(source) -> str:
    """The architecture of a source's generator: from its checkpoint's netG_config (read without its tensors),
    else the --netG given for bare state_dicts."""
    try:
        summary = run_files.summarize(source.checkpoint)
    except CheckpointError:  # a file load_generator will name
        summary = None
    if summary is not None and summary.generator is not None:
        return summary.generator
    return source.generator_kwargs.get("name", "unet_256")
