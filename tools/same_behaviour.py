"""Check that two checkouts of the project behave the same: one small scenario run with each, compared.

    python tools/same_behaviour.py OLD NEW [--work DIR] [--python PY]

Each checkout runs as processes (cwd and PYTHONPATH set to it) on the CPU at tiny sizes, writing into
<work>/old or <work>/new: a straight run, a run stopped and resumed, an FCN-8s segmenter, evaluate.py, then
command lines that must be refused; both train on the data NEW generates. A checkout's work folder is
replaced by <work> before comparing. Prints a Markdown table; exit 0 when every checked row is identical,
1 otherwise (rows marked "info" are shown but not counted).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TRAIN = ("train.py --netG unet_32 --ngf 8 --ndf 8 --load-size 36 --crop-size 32 --n-epochs 1 --n-epochs-decay 1 "
         "--num-workers 0 --device cpu --log-freq 2 --image-freq 4 --save-epoch-freq 1 --noise-freq 3 "
         "--noise-probe 2 --keep-full 1 --optim tradam --threads 1").split()
SEGMENTER = ("-m eval.train_segmenter --arch fcn8s --config width_mult=0.0625 --config batch_norm=true --num-workers 0 "
             "--crop-size 32 --load-size 36 --batch-size 2 --n-epochs 1 --device cpu --threads 1").split()
DATA = "-m data.synthetic --train-frames 6 --val-frames 3 --size 32".split()
# Command lines: {train}, {segmenter}, {evaluate} stand for lists of arguments (see command); {work}, {ck} and
# {data} for the checkout's work folder, its checkpoints folder and the shared data.
SCENARIO = {"train straight": "{train} --name straight",
            "train resumed, 5 steps": "{train} --name resumed --max-steps 5",
            "resume to the end": "{train} --name resumed --resume --max-steps 0",
            "resume the finished run": "{train} --name resumed --resume",
            "train the segmenter": "{segmenter} --dataroot {data} --out {ck}/segmenters/fcn8s.pt",
            "evaluate": "{evaluate} --out {work}/results --batch-size 2 --figure-frames 1"}
REFUSALS = ("{train} --name refused --ngf 0",
            "{train} --name refused --crop-size 40",  # larger than --load-size 36
            "{train} --name nowhere --resume",
            "{train} --name straight",  # exists, no --resume/--overwrite
            "{train} --name straight --resume --n-epochs 3",  # changes the trajectory
            "{train} --name straight --resume --overwrite",
            "{train} --name refused --netG unet_64",  # crop 32
            "{evaluate} --out {work}/refused --max-val-frames 0",
            "{evaluate} --out {work}/refused --checkpoints-dir {work}/nowhere",
            "{evaluate} --out {work}/a_file.txt",
            "-m eval.train_segmenter --arch fcn8s --lr -1 --device cpu --dataroot {data} --out {work}/refused/s.pt",
            "-m eval.import_segmenter drn_d_105 {work}/missing.pth --out {work}/x.pt",
            "-m data.prepare --cityscapes {work}/missing --out {work}/y",
            "-m data.synthetic --train-frames 0 --out {work}/none")
TIMING_LINE = re.compile(r"step/s|img/s|frame/s|\beta\b|done in|\d+/\d+ \w+ \(|\d%\|")  # dropped from stdout
TIMING_KEY = re.compile(r"wall|seconds|elapsed|duration")  # segmenter metadata keys left out
TIMING_SCALARS = {"step_time"}  # wall-clock seconds per step: only its steps are compared


class Checkout:
    """One checkout: its code, its work folder, and how to run a command in it."""

    def __init__(self, label: str, root: str, work: Path, python: str):
        self.label, self.root, self.python = label, Path(root).resolve(), python
        self.work, self.ck = work, work / "ck"
        work.mkdir(parents=True, exist_ok=True)

    def run(self, args: list[str]) -> subprocess.CompletedProcess:
        """Run ``python args`` in the checkout, its output captured as text."""
        print(f"{self.label}: {' '.join(args[:3])} ...", file=sys.stderr, flush=True)
        env = dict(os.environ, PYTHONPATH=str(self.root))
        return subprocess.run([self.python, *args], cwd=self.root, env=env, capture_output=True, text=True)

    def clean(self, value):
        """``value`` (strings anywhere in it) with the work and code folders replaced by placeholders."""
        if isinstance(value, str):  # whole path names only: /tmp/a is not replaced in /tmp/ab
            for folder, placeholder in ((self.work, "<work>"), (self.root, "<checkout>")):
                value = re.sub(re.escape(str(folder)) + r"(?![\w-]|\.\w)", placeholder, value)
            return value
        if isinstance(value, dict):
            return {self.clean(k): self.clean(v) for k, v in value.items()}
        return type(value)(self.clean(v) for v in value) if isinstance(value, (list, tuple)) else value

    def load(self, path: Path):
        """A checkpoint (weights_only) with the paths replaced, or None if it is absent."""
        return self.clean(torch.load(path, map_location="cpu", weights_only=True)) if path.is_file() else None


def first_difference(old, new, where: str = "") -> str | None:
    """Where ``old`` and ``new`` first differ (tensors by torch.equal, NaN equal to NaN), or None."""
    at = where or "top level"
    if type(old) is not type(new):
        return f"{at}: {type(old).__name__} vs {type(new).__name__}"
    if isinstance(old, torch.Tensor):
        return tensor_difference(old, new, at)
    if isinstance(old, dict):
        if set(old) != set(new):
            return (f"{at}: keys only in old {sorted(map(str, set(old) - set(new)))}, "
                    f"only in new {sorted(map(str, set(new) - set(old)))}")
        pairs = [(old[key], new[key], f"{where}/{key}") for key in old]
    elif isinstance(old, (list, tuple)):
        pairs = [(a, b, f"{where}/{i}") for i, (a, b) in enumerate(zip(old, new))]
        pairs += [(len(old), len(new), f"{at} (number of items)")]
    elif isinstance(old, float) and math.isnan(old) and math.isnan(new):
        return None
    elif isinstance(old, (str, bytes)) and old != new:  # where the first differing character or byte is
        i = next((i for i, (x, y) in enumerate(zip(old, new)) if x != y), min(len(old), len(new)))
        if isinstance(old, bytes):
            return f"{at}: {len(old)} vs {len(new)} bytes, the first difference at byte {i}"
        return f"{at}: ...{old[max(0, i - 30):i + 60]!r} vs ...{new[max(0, i - 30):i + 60]!r}"
    else:
        return None if old == new else f"{at}: {repr(old)[:80]} vs {repr(new)[:80]}"
    return next((found for a, b, w in pairs if (found := first_difference(a, b, w))), None)


def tensor_difference(a: torch.Tensor, b: torch.Tensor, at: str) -> str | None:
    """How two tensors differ (dtype, shape, values by torch.equal with NaN equal to NaN), or None."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"{at}: {a.dtype} {tuple(a.shape)} vs {b.dtype} {tuple(b.shape)}"
    if torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                             and torch.equal(a[~a.isnan()], b[~b.isnan()])):
        return None
    gap = (a.double() - b.double()).abs().nan_to_num(float("inf"))
    return f"{at}: {int((gap > 0).sum())} of {a.numel()} values differ, by up to {gap.max().item():.3g}"


def row(item: str, difference: str | None, same_detail: str = "", counted: bool = True) -> tuple:
    """A table row: (item, identical, detail, counted); the detail is the difference if there is one."""
    return item, difference is None, same_detail if difference is None else difference, counted


def compare_checkpoints(old: Checkout, new: Checkout, run: str) -> list[tuple]:
    """A row per latest.pt, epoch_NNN.pt and full_NNN.pt of ``run``: its top-level keys and every value."""
    names = sorted({p.name for c in (old, new) for pattern in ("latest.pt", "epoch_*.pt", "full_*.pt")
                    for p in (c.ck / run).glob(pattern)})
    rows = []
    for name in names:  # a file missing in one checkout is None there
        a, b = old.load(old.ck / run / name) or {}, new.load(new.ck / run / name) or {}
        keys = f"keys: {', '.join(a)}" if list(a) == list(b) else f"keys old: {', '.join(a)}; new: {', '.join(b)}"
        found = first_difference(a, b)
        rows.append(row(f"{run}/{name}", found and f"{found}; {keys}", keys))
    return rows or [row(f"{run}: checkpoints", "no checkpoint in either checkout")]


def read_events(folder: Path, checkout: Checkout) -> dict:
    """Per kind and tag: scalars as (step, value), images as (step, encoded bytes), text as (step, text)."""
    events = EventAccumulator(str(folder), purge_orphaned_data=False, size_guidance={
        kind: 0 for kind in ("scalars", "images", "audio", "histograms", "compressedHistograms", "tensors")})
    events.Reload()
    tags = events.Tags()
    return {"scalars": {tag: [(e.step, None if tag in TIMING_SCALARS else e.value) for e in events.Scalars(tag)]
                        for tag in tags["scalars"]},
            "images": {tag: [(e.step, e.encoded_image_string) for e in events.Images(tag)] for tag in tags["images"]},
            "text": {tag: [(e.step, checkout.clean([s.decode() for s in e.tensor_proto.string_val])
                            or e.tensor_proto.SerializeToString()) for e in events.Tensors(tag)]
                     for tag in tags["tensors"]}}


def tree(folder: Path, checkout: Checkout | None) -> dict[str, bytes | str]:
    """The files under ``folder`` by relative name: bytes, or text with ``checkout``'s paths replaced."""
    text = (".md", ".csv", ".json") if checkout else ()
    return {p.relative_to(folder).as_posix(): checkout.clean(p.read_text()) if p.suffix in text else p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def compare_trees(item: str, a: dict, b: dict) -> tuple:
    """One row: the same file names, and the same contents."""
    if set(a) != set(b):
        return row(item, f"files only in old: {sorted(set(a) - set(b))[:5]}, only in new: "
                         f"{sorted(set(b) - set(a))[:5]}")
    bad = [name for name in a if a[name] != b[name]]
    if bad:
        return row(item, f"{len(bad)} of {len(a)} files differ, first {bad[0]}: "
                         f"{first_difference(a[bad[0]], b[bad[0]])}")
    return row(item, None if a else "no files in either checkout", f"{len(a)} files")


def compare_run(old: Checkout, new: Checkout, run: str) -> list[tuple]:
    """Checkpoints, options.json, TensorBoard events, samples and file names of one run."""
    options = [c.clean(json.loads((c.ck / run / "options.json").read_text())) for c in (old, new)]
    names = [sorted(p.relative_to(c.ck / run).as_posix() for p in (c.ck / run).rglob("*")
                    if p.is_file() and p.parent.name != "events") for c in (old, new)]
    rows = [*compare_checkpoints(old, new, run),
            row(f"{run}/options.json", first_difference(*options), f"{len(options[0])} options")]
    events = [read_events(c.ck / run / "events", c) for c in (old, new)]
    for kind, series in events[0].items():
        note = f"{len(series)} tags, {sum(map(len, series.values()))} events" + (
            f"; values of {', '.join(sorted(TIMING_SCALARS))} ignored (timings)" if kind == "scalars" else "")
        rows.append(row(f"{run}: TensorBoard {kind}", first_difference(series, events[1][kind]), note))
    return rows + [compare_trees(f"{run}/samples/*.png", *(tree(c.ck / run / "samples", c) for c in (old, new))),
                   row(f"{run}: file names (events/ aside)", first_difference(*names), ", ".join(names[0]))]


def without_timings(value, where: str, dropped: list[str]):
    """``value`` without the dict keys that are wall-clock timings; their paths go to ``dropped``."""
    if not isinstance(value, dict):
        return value
    dropped += [f"{where}{key}" for key in value if TIMING_KEY.search(str(key))]
    return {key: without_timings(item, f"{where}{key}.", dropped) for key, item in value.items()
            if not TIMING_KEY.search(str(key))}


def compare_segmenter(old: Checkout, new: Checkout) -> list[tuple]:
    """The segmenter's tensors, and everything else in its file but the timing keys."""
    a, b = (c.load(c.ck / "segmenters" / "fcn8s.pt") for c in (old, new))
    if a is None or b is None:
        return [row("segmenters/fcn8s.pt", f"missing in {'old' if a is None else 'new'}")]
    dropped = []
    rest = [without_timings({k: v for k, v in f.items() if k != "state_dict"}, "", dropped) for f in (a, b)]
    ignored, found = "ignored: " + (", ".join(sorted(set(dropped))) or "nothing"), first_difference(*rest)
    return [row("segmenters/fcn8s.pt state_dict", first_difference(a.get("state_dict"), b.get("state_dict")),
                f"{len(a.get('state_dict') or {})} tensors"),
            row("segmenters/fcn8s.pt, all but state_dict", found and f"{found}; {ignored}",
                f"keys: {', '.join(a)}; {ignored}")]


def compare_results(old: Checkout, new: Checkout) -> list[tuple]:
    """evaluate.py's files: results.json as JSON, the tables as text, the images as bytes."""
    a, b = (tree(c.work / "results", c) for c in (old, new))
    found = [json.loads(f["results.json"]) if "results.json" in f else None for f in (a, b)]
    rows = [row("results: file names", first_difference(sorted(a), sorted(b)), f"{len(a)} files"),
            row("results/results.json", first_difference(*found), "as JSON")]
    for pattern in ("results.csv", "results.md", "per_class_*.md", "comparison.png", "*/images/*.png"):
        rows.append(compare_trees(f"results/{pattern}", *({n: d for n, d in f.items() if Path(n).match(pattern)}
                                                          for f in (a, b))))
    return rows


def compare_data(old: Checkout, new: Checkout, data: Path) -> list[tuple]:
    """Generate the data with NEW (the shared input) and OLD; compare every file, each index.json as JSON
    without "sources", a fingerprint of the input files' modification times (data.prepare)."""
    made = [c.run([*DATA, "--out", str(folder)]).returncode for c, folder in ((old, old.work / "data"), (new, data))]
    files = [tree(folder, None) for folder in (old.work / "data", data)]
    for name in [n for n in files[0] if Path(n).name == "index.json" and n in files[1]]:
        for f in files:
            f[name] = {k: v for k, v in json.loads(f[name]).items() if k != "sources"}
    return [row("data.synthetic exit status", None if made == [0, 0] else f"old {made[0]}, new {made[1]}", "0 in both"),
            compare_trees("data.synthetic: every file (index.json as JSON, its mtime \"sources\" aside)", *files)]


def command(template: str, c: Checkout, data: Path) -> list[str]:
    """The arguments of a command line of SCENARIO or REFUSALS for checkout ``c``."""
    lists = {"train": [*TRAIN, "--dataroot", str(data), "--checkpoints-dir", str(c.ck)], "segmenter": SEGMENTER,
             "evaluate": ["evaluate.py", "--checkpoints-dir", str(c.ck), "--device", "cpu"]}
    return [arg for token in template.split() for arg in
            lists.get(token[1:-1]) or [token.format(work=c.work, ck=c.ck, data=data)]]


def scenario_rows(old: Checkout, new: Checkout, data: Path) -> list[tuple]:
    """Run the scenario in both; rows of exit status and stdout (info, timing lines left out)."""
    done = [{name: c.run(command(line, c, data)) for name, line in SCENARIO.items()} for c in (old, new)]
    rows = []
    for name, a in done[0].items():
        b = done[1][name]
        status = f"old {a.returncode}, new {b.returncode}: {(b.stderr or a.stderr).strip()[-200:]!r}"
        rows.append(row(f"{name}: exit status", None if a.returncode == b.returncode == 0 else status, "0 in both"))
        lines = [[line for line in c.clean(p.stdout).replace("\r", "\n").splitlines()
                  if line.strip() and not TIMING_LINE.search(line)] for p, c in ((a, old), (b, new))]
        rows.append(row(f"{name}: stdout", first_difference(*lines), f"{len(lines[0])} lines", counted=False))
    finished = ["already finished" in d["resume the finished run"].stdout for d in done]
    return rows + [row("resume the finished run says 'already finished'", None if all(finished) else
                       f"old, new: {finished}")]


def refusal_rows(old: Checkout, new: Checkout, data: Path) -> list[tuple]:
    """A row per command line of REFUSALS: its exit status and stderr text, the same in both."""
    for c in (old, new):
        (c.work / "a_file.txt").write_text("not a folder\n")
    done = [[c.run(command(line, c, data)) for line in REFUSALS] for c in (old, new)]
    rows = []
    for line, a, b in zip(REFUSALS, *done):
        seen = [(p.returncode, c.clean(p.stderr).strip()) for p, c in ((a, old), (b, new))]
        note = f"exit {seen[0][0]}{' (not refused!)' if seen[0][0] == 0 else ''}: {(seen[0][1].splitlines() or [''])[-1]}"
        rows.append(row(f"refused: {line}", None if seen[0] == seen[1] else
                        f"old exit {seen[0][0]} {seen[0][1][-150:]!r}; new exit {seen[1][0]} {seen[1][1][-150:]!r}",
                        note))
    return rows


def run_scenario(old: Checkout, new: Checkout, work: Path) -> list[tuple]:
    """The data, the scenario and its comparisons, then the refusals: every row of the table."""
    data = work / "data"
    rows = compare_data(old, new, data) + scenario_rows(old, new, data / "pix2pix")
    for compare in (lambda: compare_run(old, new, "straight"), lambda: compare_run(old, new, "resumed"),
                    lambda: compare_segmenter(old, new), lambda: compare_results(old, new)):
        try:
            rows += compare()
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            rows.append(row("comparison", f"could not compare: {type(error).__name__}: {error}"))
    return rows + refusal_rows(old, new, data / "pix2pix")


def table(rows: list[tuple]) -> str:
    """The rows as a Markdown table (info rows marked)."""
    lines = ["| item | identical | detail |", "|---|---|---|"]
    for item, same, detail, counted in rows:
        cell = str(detail).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {item} | {'yes' if same else 'no'}{'' if counted else ' (info)'} | {cell[:300]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the checkout before the change")
    parser.add_argument("new", help="the checkout after the change")
    parser.add_argument("--work", help="an empty or new folder for both checkouts' files (default: a temporary one)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs both checkouts")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="same_behaviour-")).resolve()
    if work.exists() and any(work.iterdir()):
        print(f"--work {work}: not empty; give an empty or new folder", file=sys.stderr)
        return 2
    old, new = (Checkout(label, root, work / label, args.python)
                for label, root in (("old", args.old), ("new", args.new)))
    rows = run_scenario(old, new, work)
    print(f"# {old.root} (old) against {new.root} (new), files in {work}\n\n{table(rows)}")
    return 0 if all(same for _, same, _, counted in rows if counted) else 1


if __name__ == "__main__":
    sys.exit(main())
