"""Fingerprints of sets of files: cheap digests that change when the files change."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable


def files_fingerprint(paths: Iterable[Path], base: Path, with_mtime: bool = False) -> str:
    """sha256 of each file's path relative to ``base`` and its size (and modification time).

    Without ``with_mtime`` it survives moving or copying the files elsewhere, and changes when a
    file is added, removed, renamed or changes size; with it, also when a file is rewritten.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        stat = path.stat()
        stamp = f"\0{stat.st_mtime_ns}" if with_mtime else ""
        digest.update(f"{path.relative_to(base).as_posix()}\0{stat.st_size}{stamp}\n".encode())
    return digest.hexdigest()
