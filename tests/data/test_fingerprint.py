"""Dataset fingerprints (data.fingerprint, data.aligned.dataset_fingerprint): names and sizes, the files' bytes,
and the cache of their digests by (path, size, mtime, ctime)."""
import json
import os
import shutil
import time

import pytest

import data.fingerprint
from data import DataError
from data.aligned import check_same_dataset, dataset_fingerprint
from data.fingerprint import DIGEST_CACHE, files_fingerprint

HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


def _copy(root, to, settled=True):
    """A copy of the dataset with new modification times (an hour ago when ``settled``, else now); its ctimes are
    now, whatever ``settled`` says."""
    copy = shutil.copytree(root, to, copy_function=shutil.copyfile)
    if settled:
        for path in copy.rglob("*"):
            os.utime(path, ns=(HOUR_AGO_NS, HOUR_AGO_NS))
    return copy


@pytest.fixture()
def settled_at_once(monkeypatch):
    """Files count as settled (their digests cached) as soon as they are hashed: a test cannot set a ctime back."""
    monkeypatch.setattr(data.fingerprint, "SETTLED_NS", 0)


@pytest.fixture()
def hashed(monkeypatch):
    """The files whose bytes data.fingerprint reads (their SHA-256 is the only reading of a file's bytes)."""
    read = []

    def counting(path):
        read.append(path.name)
        return real(path)
    real = data.fingerprint.file_sha256
    monkeypatch.setattr(data.fingerprint, "file_sha256", counting)
    return read


def _flip_bytes(path, count=40):
    """``count`` bytes of ``path`` changed in the middle: same name, same size, other content."""
    content = bytearray(path.read_bytes())
    middle = len(content) // 2
    content[middle:middle + count] = bytes(b ^ 0xFF for b in content[middle:middle + count])
    stat = path.stat()
    path.write_bytes(bytes(content))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same modification time, too


def test_the_content_digest_follows_the_bytes_wherever_the_files_lie(synthetic_root, tmp_path):
    first = dataset_fingerprint(synthetic_root)
    assert set(first) == {"train_frames", "val_frames", "digest", "content"}
    assert (first["train_frames"], first["val_frames"]) == (4, 3)
    assert dataset_fingerprint(_copy(synthetic_root, tmp_path / "moved")) == first  # other folder, other mtimes
    assert dataset_fingerprint(_copy(synthetic_root, tmp_path / "fresh", settled=False)) == first

    other = shutil.copytree(synthetic_root, tmp_path / "other")  # the same mtimes, the cache too
    for jpeg in (other / "train").glob("*.jpg"):
        _flip_bytes(jpeg)
    changed = dataset_fingerprint(other)
    assert changed["digest"] == first["digest"] and changed["content"] != first["content"]


def test_digests_are_read_from_the_cache_until_a_files_size_or_times_change(synthetic_root, tmp_path, hashed,
                                                                              settled_at_once):
    root = _copy(synthetic_root, tmp_path / "data")
    (root / DIGEST_CACHE).unlink(missing_ok=True)
    first = dataset_fingerprint(root)
    assert len(hashed) == 4 + 3 + 4 + 3 + 1  # pairs, trainId maps, index.json: each read once
    cache = root / DIGEST_CACHE
    assert set(json.loads(cache.read_text())["files"]) == {f"train/{i}.jpg" for i in range(4)} | {
        f"val/{i}.jpg" for i in range(3)} | {f"train_trainids/{i}.png" for i in range(4)} | {
        f"val_trainids/{i}.png" for i in range(3)} | {"index.json"}
    written = cache.stat().st_mtime_ns

    hashed.clear()
    assert dataset_fingerprint(root) == first and hashed == []  # no image read again, the cache not rewritten
    assert cache.stat().st_mtime_ns == written

    os.utime(root / "val" / "1.jpg", ns=(HOUR_AGO_NS, HOUR_AGO_NS + 10**9))  # another mtime, same bytes
    assert dataset_fingerprint(root) == first and hashed == ["1.jpg"]
    hashed.clear()
    with open(root / "train" / "2.jpg", "ab") as file:  # another size
        file.write(b"\0")
    os.utime(root / "train" / "2.jpg", ns=(HOUR_AGO_NS, HOUR_AGO_NS))
    assert dataset_fingerprint(root)["content"] != first["content"] and hashed == ["2.jpg"]
    hashed.clear()
    assert dataset_fingerprint(root)["content"] != first["content"] and hashed == []

    _flip_bytes(root / "val" / "2.jpg")  # rewritten, its size and mtime put back: its ctime tells
    assert dataset_fingerprint(root)["content"] != first["content"] and hashed == ["2.jpg"]


def test_files_changed_just_before_they_were_hashed_are_hashed_again(synthetic_root, tmp_path, hashed):
    """Within one timestamp tick a file can be rewritten with the same size and times: such young digests
    are not cached."""
    root = _copy(synthetic_root, tmp_path / "data")
    first = dataset_fingerprint(root)
    cache = root / DIGEST_CACHE
    assert len(hashed) == 15 and (not cache.exists() or json.loads(cache.read_text())["files"] == {})
    assert dataset_fingerprint(root) == first and len(hashed) == 30


def test_an_unwritable_or_broken_cache_is_no_error(synthetic_root, tmp_path, monkeypatch, hashed, settled_at_once):
    root = _copy(synthetic_root, tmp_path / "data")
    (root / DIGEST_CACHE).unlink(missing_ok=True)
    expected = dataset_fingerprint(synthetic_root)

    def read_only(path, value):
        raise PermissionError(13, "Permission denied", str(path))
    with monkeypatch.context() as patch:
        patch.setattr(data.fingerprint, "write_json", read_only)
        assert dataset_fingerprint(root) == expected
    assert not (root / DIGEST_CACHE).exists()

    for broken in ("{not json", '{"version": 1, "files": {"train/0.jpg": [1, 2, 3, "x"]}}', "[]", "\xff"):
        (root / DIGEST_CACHE).write_text(broken)
        hashed.clear()
        assert dataset_fingerprint(root) == expected and len(hashed) == 15  # ignored, then written again
        assert len(json.loads((root / DIGEST_CACHE).read_text())["files"]) == 15


def test_a_checkpoints_fingerprint_is_compared_by_content_when_it_has_one(synthetic_root, tmp_path):
    saved = dataset_fingerprint(synthetic_root)
    other = _copy(synthetic_root, tmp_path / "other")
    _flip_bytes(other / "train" / "0.jpg")
    now = dataset_fingerprint(other)
    with pytest.raises(DataError) as info:
        check_same_dataset(other, now, saved, synthetic_root)
    assert str(info.value) == (f"--dataroot {other}: not the dataset the run was trained on (same file names and "
                               f"sizes, but the files' contents differ from those of {synthetic_root})")
    older = {key: value for key, value in saved.items() if key != "content"}  # a checkpoint of an older version
    check_same_dataset(other, now, older, synthetic_root)
    (other / "val" / "0.jpg").unlink()
    (other / "val" / "2.jpg").rename(other / "val" / "0.jpg")
    shutil.copyfile(other / "val" / "1.jpg", other / "val" / "2.jpg")
    with pytest.raises(DataError, match="file names or sizes differ"):
        check_same_dataset(other, dataset_fingerprint(other), older, synthetic_root)


def test_a_folders_names_and_sizes_fingerprint_leaves_its_digest_cache_out(synthetic_root, tmp_path,
                                                                           settled_at_once):
    """experiments.study keys a dataset by every file under it: reading its fingerprint must not change that key."""
    root = _copy(synthetic_root, tmp_path / "data")
    (root / DIGEST_CACHE).unlink(missing_ok=True)

    def whole_folder():
        return files_fingerprint([p for p in root.rglob("*") if p.is_file()], root)
    before = whole_folder()
    dataset_fingerprint(root)
    (root / f".{DIGEST_CACHE}.12345.abcd.tmp").write_text("a write under way")
    assert (root / DIGEST_CACHE).is_file() and whole_folder() == before
