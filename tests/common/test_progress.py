"""common/progress.py: plain periodic lines (with position, rate and ETA) when output goes to a log."""
import io

from common.progress import _LineProgress, progress


def test_plain_lines_report_position_rate_eta_and_postfix():
    out = io.StringIO()
    bar = _LineProgress(total=4, desc="train", unit="step", interval=0.0, file=out)
    for _ in range(4):
        bar.update(1)
        bar.set_postfix({"G_L1": 12.3456, "epoch": 2})
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("train: 1/4 step (") and "step/s" in lines[0] and "eta" in lines[0]
    assert lines[-1].startswith("train: 4/4 step") and "G_L1=12.35" in lines[-1] and "epoch=2" in lines[-1]
    assert len(lines) == 5  # one per update, then the final line at close


def test_iterating_wraps_the_iterable_and_resumes_from_initial():
    out = io.StringIO()
    items = list(_LineProgress(range(3), total=13, desc="x", initial=10, interval=1e9, file=out))
    assert items == [0, 1, 2]
    assert out.getvalue().startswith("x: 13/13 it") and len(out.getvalue().splitlines()) == 1


def test_not_a_terminal_gives_plain_lines(capsys):
    bar = progress(total=2, desc="demo")  # pytest captures stdout: not a terminal
    assert isinstance(bar, _LineProgress)
    bar.update(2)
    bar.close()
    assert "demo: 2/2" in capsys.readouterr().out
