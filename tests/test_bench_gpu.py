"""bench/gpu.py runs its small CPU version end to end and reports every measurement it promises."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import gpu  # noqa: E402


def table(text: str, header: str) -> dict[str, list[str]]:
    """The rows of the markdown table whose header starts with ``header``: first cell -> other cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header}"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_cpu_run_prints_every_table(capsys):
    assert gpu.main(["--device", "cpu", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    training = table(out, "training step")
    assert list(training) == list(gpu.training_variants(gpu.SMALL, "cpu", with_compile=False))
    assert all(float(ms) > 0 for ms, *_ in training.values())
    optimizer = table(out, "optimizer.step()")
    assert list(optimizer) == list(gpu.optimizer_variants())
    launches = {name: int(cells[2]) for name, cells in optimizer.items()}
    # the multi-tensor path: the step counters, one d and one kernel call; the per-tensor path: many
    assert launches["TRAdam, multi-tensor (foreach=True)"] == launches["torch Adam, fused"] + 1
    assert launches["TRAdam, per tensor (foreach=False)"] > 10 * launches["TRAdam, multi-tensor (foreach=True)"]
    evaluation = table(out, "evaluation")
    assert len(evaluation) == 2 and all(len(cells) == 2 for cells in evaluation.values())
    # the fullres rows say what the network really sees: the frame resized to its training resolution
    assert out.count("| 256 (32x32 frame, network at 32x32) |") == 2
    assert out.count("| fullres (128x64 frame, network at 32x32) |") == 2
    references = table(out, "reference scorer at full resolution")
    assert [cells[0] for cells in references.values()] == ["128x64", "129x65"]  # Caffe: the frame; DPC: its crop
    assert any(name.startswith("FCN-8s (pix2pix Caffe") for name in references)
    assert any(name.startswith("DPC Xception-71") for name in references)
    assert all(float(fps) > 0 and float(mb) >= 0 for _, fps, mb in references.values())
    assert "torchrun" not in out  # no second GPU, no --processes: no torchrun run


@pytest.mark.slow
def test_torchrun_rows_time_train_py_and_count_its_collectives():
    """The torchrun measurement on the CPU over gloo: train.py at 1 and 2 processes; between log steps
    train.py issues no collective (before, every step had its stop all-reduce and G's buffer broadcast)."""
    from dataclasses import replace
    import torch
    rows = gpu.bench_torchrun(replace(gpu.SMALL, steps=2, warmup=1), torch.device("cpu"), 2)
    assert [n for n, _, _ in rows] == [1, 2]
    assert all(ms > 0 for _, ms, _ in rows)
    assert [per_step for _, _, per_step in rows] == [0.0, 0.0]
