"""What evaluate.py scores: the image sources (training runs, generator files, image folders).

* :class:`ImageSource` - one set of generated images to score and the table row it belongs to;
* :func:`find_runs` - the training runs under a checkpoints folder (``options.json`` and ``latest.pt``);
* :func:`given_sources` - ``--generator`` files and ``--images`` folders;
* :func:`open_eval_sets` - the validation frames of every dataset the sources use, image folders checked;
* :func:`method_order` - table rows ordered as the paper's (the optimizers of :mod:`gan.optimizers` in its
  order, then the others by name).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from common.checkpoint import CheckpointError
from eval import EvalError
from eval.eval_sets import EvalSet, check_image_folder, open_eval_set
from gan import run_files
from common.command_line import flag
from gan.optimizers import OPTIMIZERS, optimizer_label
from gan.run_files import LOCATION_OPTIONS, RUNTIME_OPTIONS

SEGMENTER_DIR = "segmenters"  # the folder of trained segmenters inside the checkpoints folder


@dataclass
class ImageSource:
    """One set of generated images to score: a run, a generator file or an image folder."""
    label: str                     # unique name (run folder name, file or folder name)
    method: str                    # table row it belongs to (optimizer display name)
    dataroot: Path
    seed: int | None = None
    checkpoint: Path | None = None  # generator file, if images are to be generated
    images: Path | None = None      # folder of <frame>.png (given, or where generated)
    generator_kwargs: dict = field(default_factory=dict)
    note: str = ""
    options: dict = field(default_factory=dict, repr=False)  # a run's options.json


def method_order(methods: list[str]) -> list[str]:
    """The distinct ``methods``: the paper's optimizers first, in its order, then the others by name."""
    known = [spec.label for spec in OPTIMIZERS.values()]

    def base(method: str) -> str:  # "TRAdam (--lr 0.01)" is a TRAdam row
        return method.split(" (")[0]
    return sorted(set(methods), key=lambda m: (known.index(base(m)) if base(m) in known else len(known), m))


def read_options(path: Path) -> dict:
    try:
        options = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalError(f"{path}: cannot read run options ({exc})") from None
    if not isinstance(options, dict):
        raise EvalError(f"{path}: expected a JSON object of options")
    return options


def check_direction(options: dict, where: Path) -> None:
    direction = options.get("direction", "BtoA")
    if direction != "BtoA":
        raise EvalError(f"{where}: direction {direction} generates labels from photos; FCN-score scores "
                        f"labels->photo generators (BtoA)")


def find_runs(checkpoints: Path, only: list[str] | None = None) -> list[ImageSource]:
    """The training runs under ``checkpoints`` (skipping the segmenters folder), sorted by name."""
    if not checkpoints.is_dir():
        raise EvalError(f"{checkpoints}: checkpoints folder not found")
    folders = sorted(p for p in checkpoints.iterdir() if p.is_dir() and p.name != SEGMENTER_DIR
                     and not p.name.startswith("."))
    if only:
        missing = [name for name in only if not (checkpoints / name).is_dir()]
        if missing:
            raise EvalError(f"{checkpoints / missing[0]}: run folder not found")
        folders = [checkpoints / name for name in only]
    runs = []
    for folder in folders:
        options_path, latest = folder / "options.json", folder / "latest.pt"
        if not options_path.is_file() and (folder / "latest_net_G.pth").is_file():
            print(f"skipping {folder}: a reference trainer run; score it with "
                  f"--generator {folder / 'latest_net_G.pth'}")
            continue
        if not only and not latest.is_file():
            print(f"skipping {folder}: no checkpoint yet (no latest.pt: a run that is starting or never saved)")
            continue
        if not any(folder.iterdir()):
            raise EvalError(f"{folder}: empty run folder (no options.json, no latest.pt)")
        if not options_path.is_file():
            raise EvalError(f"{options_path}: missing; not a training run folder")
        if not latest.is_file():
            raise EvalError(f"{latest}: missing; the run has no checkpoint yet")
        options = read_options(options_path)
        check_direction(options, options_path)
        if "dataroot" not in options or "optim" not in options:
            raise EvalError(f"{options_path}: no 'dataroot' or 'optim' entry")
        runs.append(ImageSource(label=folder.name, method=optimizer_label(options["optim"]),
                                dataroot=Path(options["dataroot"]), seed=options.get("seed"),
                                checkpoint=latest, note=_progress_note(latest, options), options=options))
    if not runs:
        raise EvalError(f"{checkpoints}: no training runs (folders with options.json and latest.pt); "
                        f"train one with `python train.py --optim adam`")
    name_configurations(runs)
    return runs


# Options that say how or where a run ran, not what it is: runs that differ only in these (and the seed) are
# one configuration, pooled in one table row as mean ± std over seeds.
NOT_THE_CONFIGURATION = (RUNTIME_OPTIONS - {"dataroot"}) | LOCATION_OPTIONS | {"seed", "threads", "given"}


def name_configurations(runs: list[ImageSource]) -> None:
    """Make each table row one configuration: runs of one optimizer that differ in more than the seed get the
    options that tell them apart in their row's name (e.g. "TRAdam (--lr 0.01)"), and an unfinished run is a
    row of its own ("TRAdam (unfinished)")."""
    for method in {run.method for run in runs}:
        members = [run for run in runs if run.method == method]
        configs = [{k: v for k, v in run.options.items() if k not in NOT_THE_CONFIGURATION} for run in members]
        keys = sorted({k for config in configs for k in config})
        differing = [k for k in keys if len({repr(config.get(k)) for config in configs}) > 1]
        for run, config in zip(members, configs):
            parts = [f"{flag(k)} {config.get(k)}" for k in differing] + (["unfinished"] if run.note else [])
            if parts:
                run.method = f"{method} ({', '.join(parts)})"


def _progress_note(checkpoint: Path, options: dict) -> str:
    """'' for a finished run, else a short note (the epoch it reached of its ``options``' epochs), read without
    loading tensors."""
    try:
        summary = run_files.summarize(checkpoint)
    except CheckpointError:
        return ""  # load_generator will report an unreadable file
    if summary.finished is None or summary.finished:
        return ""
    epochs = options.get("n_epochs", 0) + options.get("n_epochs_decay", 0)
    return f"unfinished, epoch {summary.epoch if summary.epoch is not None else '?'} of {epochs or '?'}"


def _unique(label: str, taken: set[str]) -> str:
    name, k = label, 2
    while name in taken:
        name, k = f"{label}_{k}", k + 1
    taken.add(name)
    return name


def default_dataroot() -> Path:
    """The built-in synthetic city (generated on first use)."""
    from data.synthetic import default_dataset
    return Path(default_dataset())


def given_sources(generators: list, images: list, dataroot: str | None, generator_kwargs: dict) -> list[ImageSource]:
    """ImageSources for generator files and image folders (evaluate.py's --generator, --images) on
    ``dataroot`` (None: a generator's run's, else the built-in city); ``generator_kwargs`` build a bare
    reference generator state_dict (name, norm, ngf)."""
    sources, taken = [], set()
    for path in map(Path, generators):
        if not path.is_file():
            raise EvalError(f"{path}: generator checkpoint not found")
        options_path = path.parent / "options.json"
        options = read_options(options_path) if options_path.is_file() else {}
        if options:
            check_direction(options, options_path)
        label = path.parent.name if path.stem in ("latest", "latest_net_G") and path.parent.name else path.stem
        label = _unique(label, taken)
        root = Path(dataroot) if dataroot else (
            Path(options["dataroot"]) if "dataroot" in options else default_dataroot())
        method = optimizer_label(options["optim"]) if "optim" in options else label
        sources.append(ImageSource(label, method, root, options.get("seed"), checkpoint=path,
                                   generator_kwargs=dict(generator_kwargs)))
    for folder in map(Path, images):
        if not folder.is_dir():
            raise EvalError(f"{folder}: image folder not found")
        named = folder.parent if folder.name == "images" else folder
        label = _unique(named.resolve().name, taken)
        root = Path(dataroot) if dataroot else default_dataroot()
        sources.append(ImageSource(label, label, root, images=folder))
    return sources


def open_eval_sets(sources: list[ImageSource], protocol: str, size: int | None,
                   max_frames: int | None) -> dict[Path, EvalSet]:
    """The val frames of every dataset the sources use, keyed by resolved dataroot, in first-use order;
    the given image folders are checked against them before any long computation."""
    evalsets: dict[Path, EvalSet] = {}
    for source in sources:
        key = source.dataroot.resolve()
        if key not in evalsets:
            evalsets[key] = open_eval_set(key, protocol, size, max_frames)
    for source in sources:
        if source.images is not None:
            check_image_folder(source.images, evalsets[source.dataroot.resolve()])
    return evalsets
