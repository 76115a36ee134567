"""common/checkpoint.py: atomic writes survive SIGKILL; loads are weights_only and fail with one line."""
import signal
import subprocess
import sys
import time

import pytest
import torch

from common.checkpoint import CheckpointError, load_checkpoint, save_atomic

WRITER = """
import sys, torch
from common.checkpoint import save_atomic
n = 0
while True:
    n += 1
    save_atomic({"format_version": 1, "n": n, "w": torch.full((4_000_000,), float(n))}, sys.argv[1])
"""


def test_kill_during_writes_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "latest.pt"
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=str(__import__("pathlib").Path(
        __file__).resolve().parents[1]))
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = load_checkpoint(path, require_format=True)
    assert torch.equal(state["w"], torch.full((4_000_000,), float(state["n"])))
    save_atomic({"format_version": 1}, path)  # the next write clears temporary files of the killed writer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "latest.pt.sha256"]


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    save_atomic({"format_version": 1, "w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated.pt: its SHA-256 differs from the one recorded"):
        load_checkpoint(truncated)  # the record beside it says the file changed since its save
    (tmp_path / "truncated.pt.sha256").unlink()
    with pytest.raises(CheckpointError, match="truncated.pt: cannot be read"):
        load_checkpoint(truncated)
    code = tmp_path / "code.pt"
    torch.save({"f": print}, code)  # a pickle that would run code: refused by weights_only
    with pytest.raises(CheckpointError, match="code.pt"):
        load_checkpoint(code)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_checkpoint(plain, require_format=True)
    newer = tmp_path / "newer.pt"
    save_atomic({"format_version": 99}, newer)
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(newer, require_format=True)


def test_a_refused_pickle_does_not_advise_turning_the_safety_off(tmp_path):
    code = tmp_path / "code.pt"
    torch.save({"f": print}, code)  # a pickle that would call a function when loaded
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(code)
    message = str(info.value)
    assert message.startswith(f"{code}: refused") and "print" in message and "\n" not in message
    for advice in ("weights_only", "trust", "add_safe_globals", "\x1b["):
        assert advice not in message


def test_nonfinite_entries_names_every_bad_tensor():
    from common.checkpoint import nonfinite_entries

    state = {"netG": {"w": torch.ones(3), "running_var": torch.tensor([1.0, float("inf")]),
                      "count": torch.tensor(3)},
             "optimizer": {"state": {0: {"exp_avg": torch.tensor([float("nan")], dtype=torch.float64)}}},
             "empty": torch.zeros(0), "half": torch.tensor([65504.0], dtype=torch.float16), "note": "text"}
    assert sorted(nonfinite_entries(state)) == ["netG.running_var", "optimizer.state.0.exp_avg"]
    assert nonfinite_entries({"w": torch.full((5,), 3e38)}) == []  # large but finite


def test_a_raw_pickle_is_refused_in_one_line_without_advice_or_warnings(tmp_path, recwarn):
    import pickle
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"f": print}, protocol=4))  # torch warns about protocol 4 when it reads it
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(raw)
    message = str(info.value)
    assert message.startswith(f"{raw}: refused: it holds Python objects") and "\n" not in message
    assert "weights_only" not in message and "succeed" not in message
    assert not [w for w in recwarn if "pickle" in str(w.message)]
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"text.pt: not a PyTorch file \(it starts with neither a zip header nor a "
                                              r"pickle\)$"):
        load_checkpoint(text)


def test_a_byte_copy_of_a_checkpoint_of_the_same_folder_passes_the_sha256_check(tmp_path):
    save_atomic({"format_version": 1, "w": torch.ones(3)}, tmp_path / "full_002.pt")
    save_atomic({"format_version": 1, "w": torch.zeros(3)}, tmp_path / "latest.pt")
    (tmp_path / "latest.pt").write_bytes((tmp_path / "full_002.pt").read_bytes())  # copied over on purpose
    assert torch.equal(load_checkpoint(tmp_path / "latest.pt")["w"], torch.ones(3))
