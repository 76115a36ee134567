"""bench/gpu.py runs its small CPU version end to end and reports every measurement it promises."""
import sys
from pathlib import Path

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
    assert out.count("| 256 (32x32) |") == 2 and out.count("| fullres (128x64) |") == 2
