"""The study's run records: each run's numbers in ``<out>/runs/<run>.json``, reused instead of training again.

A run of the default study takes about ten minutes of one core, and its checkpoints weigh far more than
its numbers. Once a run is trained and scored, :mod:`experiments.study.cli` keeps what the report needs of it (final
FCN-scores by every scorer, validation L1, learning curve, gradient noise, length) in a small JSON record
beside the report, so the study can be committed run by run and finished later, on another day or from a
fresh clone of the same code.

A record is reused only where it would come out the same, bit for bit:

* its **key** matches this call's: the run's train.py options (but the folder they write to), the device
  type (cpu, cuda), the torch version, the record format and a SHA-256 of the code that trains and scores
  (:func:`code_sha256`: the syntax trees of the modules train.py and evaluate.py import, without their
  docstrings, so a change of words keeps the records and a change of code makes them stale);
* its **scorers** match this call's: the SHA-256 of each scorer's weights (:func:`weights_sha256`; a
  rerun of the same scorer training on the same CPU type gives the same weights) and the same set of
  scorers.

A stale record is never read: its run is trained and scored again, and the record rewritten.

The CPU or GPU model of the machine that writes a record (for the study's own runs, the one that trained and
scored them) is kept beside the key (``recorded_on``), not in it: on one model a rerun gives the same
numbers bit for bit, another model's kernels can change their last digits (a run's noise, not its design),
so a study made in segments on several machine types reuses each one's records and its report names the
models.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from common.checkpoint import weights_sha256
from common.files import json_ready, write_json
from common.imports import code_digest

RECORD_VERSION = 3
REPO = Path(__file__).resolve().parents[2]


def code_sha256(root: Path = REPO) -> str:
    """What can move a run's numbers in the code: the syntax trees, without docstrings, of every module
    ``train.py`` and ``evaluate.py`` import (:func:`common.imports.code_digest`). A docstring or comment
    edit keeps it; a change of code they run changes it."""
    return code_digest(root)


def run_key(train_options: list[str], device: torch.device, code: str, data: str | None = None) -> dict:
    """The key of a run's record (see the module docstring); ``code``: :func:`code_sha256`; ``data``: a
    fingerprint of a given dataset's files (none for the built-in city, which the code defines)."""
    options = list(train_options)
    if "--checkpoints-dir" in options:
        del options[options.index("--checkpoints-dir"):options.index("--checkpoints-dir") + 2]
    return {"version": RECORD_VERSION, "train_options": options, "device": device.type, "torch": torch.__version__,
            "code_sha256": code, "data": data}


def record_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.json"


def _nan(value):
    return math.nan if value is None else value


def content_digest(record: dict) -> str:
    """SHA-256 of a record's numbers and words: its JSON (NaN as null) with sorted keys, its digest aside."""
    canonical = json.dumps(json_ready({k: v for k, v in record.items() if k != "digest"}), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class RecordChanged(ValueError):
    """A record whose content does not match the digest written with it (edited since)."""


def read_record(folder: Path, name: str) -> dict | None:
    """The record of run ``name``, or None when there is none or it cannot be read (it is then redone); raises
    RecordChanged when its content does not match its digest. The NaNs JSON stores as null are NaN again in its
    numbers (scores, curves, noise series)."""
    path = record_path(folder, name)
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
            return None
        if record.get("digest") != content_digest(record):
            raise RecordChanged(f"{path}: its numbers do not match the digest written with them (edited since?); "
                                f"its run is trained and scored again")
        record["val_l1"] = _nan(record["val_l1"])
        for scores in [*record["final"].values(), *(s["ground_truth"] for s in record["scorers"].values())]:
            scores.update({k: [_nan(x) for x in v] if k.startswith("per_class") else _nan(v)
                           for k, v in scores.items() if k != "confusion"})
        for series in [*record["curve"].values(), *record["noise"].values()]:
            series[:] = [(step, _nan(value)) for step, value in series]
    except RecordChanged:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def write_record(folder: Path, record: dict) -> Path:
    """``<folder>/<name>.json`` with the record and its digest (:func:`content_digest`)."""
    return write_json(record_path(folder, record["name"]), {**record, "digest": content_digest(record)})


def matches(record: dict | None, key: dict, scorers: dict[str, str] | None = None) -> bool:
    """Whether ``record`` holds this run's numbers: the same key and, when ``scorers`` ({arch: weights
    SHA-256}) is given, the same scorers."""
    if record is None or record.get("key") != key:
        return False
    if scorers is None:
        return True
    recorded = record.get("scorers", {})
    return set(recorded) == set(scorers) and all(recorded[a].get("sha256") == h for a, h in scorers.items())


class StoredRecords:
    """The records of ``folder`` and what reusing one takes: this call's device, code and data (the key's
    parts) and its scorer files, whose weights are hashed once, when first needed (after their training)."""

    def __init__(self, folder: Path, device: str, code: str, data: str | None, scorer_files: dict[str, Path]):
        self.folder, self.device, self.code, self.data = folder, device, code, data
        self.scorer_files = scorer_files
        self._scorer_hashes: dict[str, str] | None = None
        self._reported: set[str] = set()  # changed records already named

    def key(self, train_options: list[str]) -> dict:
        from common.device import resolve_device
        return run_key(train_options, resolve_device(self.device), self.code, self.data)

    def scorer_hashes(self) -> dict[str, str]:
        """{arch: weights SHA-256} of this call's scorers (their files must exist by now)."""
        if self._scorer_hashes is None:
            from common.checkpoint import load_checkpoint
            self._scorer_hashes = {arch: weights_sha256(load_checkpoint(path)["state_dict"])
                                   for arch, path in self.scorer_files.items()}
        return self._scorer_hashes

    def read(self, name: str) -> dict | None:
        """:func:`read_record`, a changed record saying so once (and then read as none: it is redone)."""
        try:
            return read_record(self.folder, name)
        except RecordChanged as error:
            if name not in self._reported:
                self._reported.add(name)
                print(error, flush=True)
            return None

    def pending(self, name: str, train_options: list[str]) -> bool:
        """Whether run ``name`` has a record of the same key, not yet checked against the scorers."""
        record = self.read(name)
        return record is not None and matches(record, self.key(train_options))

    def usable(self, name: str, train_options: list[str]) -> dict | None:
        """The record of run ``name`` when it can be reused (same key, same scorers), else None."""
        record = self.read(name)
        return record if record is not None and matches(record, self.key(train_options), self.scorer_hashes()) \
            else None
