"""Fingerprints of sets of files: cheap digests of names and sizes, and digests of their bytes, computed once
per file and cached by (relative path, size, modification time, status-change time)."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Iterable

from common.files import file_sha256, write_json

DIGEST_CACHE = ".content_digests.json"  # the cache of a folder's digests, never fingerprinted
CACHE_VERSION = 1
# A file changed this shortly before it was hashed may be rewritten within the same timestamp tick (same size and
# times): its digest is not cached, and it is hashed again the next time.
SETTLED_NS = 2 * 10**9


def files_fingerprint(paths: Iterable[Path], base: Path, with_mtime: bool = False) -> str:
    """sha256 of each file's path relative to ``base`` and its size (and modification time).

    Without ``with_mtime`` it survives moving or copying the files elsewhere, and changes when a
    file is added, removed, renamed or changes size; with it, also when a file is rewritten. Digest caches
    (:data:`DIGEST_CACHE` and their temporary files) are left out: reading a folder's fingerprint changes them.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths if not is_digest_cache(Path(p))):
        stat = path.stat()
        stamp = f"\0{stat.st_mtime_ns}" if with_mtime else ""
        digest.update(f"{path.relative_to(base).as_posix()}\0{stat.st_size}{stamp}\n".encode())
    return digest.hexdigest()


def files_content_digest(paths: Iterable[Path], base: Path, cache: Path | None = None) -> str:
    """sha256 of each file's path relative to ``base`` and the SHA-256 of its bytes: it survives moving or
    copying the files elsewhere and changes when any byte does.

    With ``cache`` (a JSON file, which should not be one of ``paths``), a file whose relative path, size,
    modification time and status-change time (ctime: every write changes it and, unlike the mtime, no program
    can set it back) are those recorded there is not read again. The cache is rewritten (atomically) when that
    changes what it records, and not at all, without an error, where it cannot be written.
    """
    known = read_digest_cache(cache) if cache is not None else {}
    started = time.time_ns()
    digest, entries = hashlib.sha256(), {}
    for path in sorted(Path(p) for p in paths):
        name = path.relative_to(base).as_posix()
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
        entry = known.get(name)
        if entry is None or entry[:3] != stamp:
            entry = [*stamp, file_sha256(path)]
        entries[name] = entry
        digest.update(f"{name}\0{entry[3]}\n".encode())
    settled = {name: entry for name, entry in entries.items() if max(entry[1:3]) < started - SETTLED_NS}
    if cache is not None and settled != known:
        try:
            write_json(cache, {"version": CACHE_VERSION, "files": settled})
        except OSError:  # a read-only dataset: no cache
            pass
    return digest.hexdigest()


def is_digest_cache(path: Path) -> bool:
    """Whether ``path`` is a :data:`DIGEST_CACHE` or one of its temporary files (common.files.write_atomic)."""
    return path.name == DIGEST_CACHE or (path.name.startswith(f".{DIGEST_CACHE}.") and path.name.endswith(".tmp"))


def _is_entry(entry) -> bool:
    return (isinstance(entry, list) and len(entry) == 4 and all(type(v) is int for v in entry[:3])
            and isinstance(entry[3], str) and len(entry[3]) == 64)


def read_digest_cache(cache: Path) -> dict[str, list]:
    """{relative path: [size, mtime_ns, ctime_ns, sha256]} of a cache :func:`files_content_digest` wrote; nothing
    from a missing, unreadable or malformed one (its entries are only ever a shortcut)."""
    try:
        recorded = json.loads(Path(cache).read_text())
    except (OSError, ValueError):
        return {}
    if not (isinstance(recorded, dict) and recorded.get("version") == CACHE_VERSION
            and isinstance(recorded.get("files"), dict)):
        return {}
    return {name: entry for name, entry in recorded["files"].items() if _is_entry(entry)}
