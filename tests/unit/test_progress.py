"""The arithmetic behind live progress: durations, a stage's rate and ETA, the matrix ETA; and the
matrix bar's plain-line output as cells finish."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from harness.progress import LiveLine, Progress, RateMeter, eta_s, fmt_duration, matrix_eta


def test_fmt_duration():
    assert fmt_duration(None) == "?"
    assert fmt_duration(float("nan")) == "?"
    assert fmt_duration(0) == "0s"
    assert fmt_duration(59.4) == "59s"
    assert fmt_duration(61) == "1m01s"
    assert fmt_duration(3600 + 125) == "1h02m"


def test_eta_needs_a_total_and_a_positive_rate():
    assert eta_s(30, 100, 7.0) == pytest.approx(10.0)
    assert eta_s(100, 100, 7.0) == 0.0
    assert eta_s(120, 100, 7.0) == 0.0  # never negative
    assert eta_s(30, None, 7.0) is None
    assert eta_s(30, 100, None) is None
    assert eta_s(30, 100, 0.0) is None


def test_rate_meter_uses_a_sliding_window_and_restarts_on_a_new_phase():
    m = RateMeter(window=10)
    assert m.rate is None
    m.add(0.0, 0)
    assert m.rate is None  # one sample is no rate
    m.add(1.0, 10)
    assert m.rate == pytest.approx(10.0)
    for t in range(2, 21):  # slows down to 1/s after t=1
        m.add(float(t), 10 + (t - 1))
    assert m.rate == pytest.approx(1.0, rel=0.15)  # the early burst has left the window
    m.add(21.0, 2)  # done went backwards: a new phase
    assert m.rate is None


def test_live_line_rate_eta_and_a_stage_supplied_eta():
    line = LiveLine()
    for t, d in ((100.0, 0), (102.0, 20), (104.0, 40)):
        line.update({"what": "lm-eval dq_arc loglikelihood", "unit": "requests", "done": d, "total": 100, "t": t})
    assert line.meter.rate == pytest.approx(10.0)
    assert line.eta == pytest.approx(6.0)
    assert line.text() == "lm-eval dq_arc loglikelihood 40/100 requests · 10 requests/s · ETA 6s"
    line.update({"what": "training", "unit": "steps", "done": 3, "total": None, "t": 5.0, "eta_s": 90, "loss": 2.5})
    assert line.meter.rate is None  # a new `what` starts a new meter
    assert line.eta == 90
    assert line.text() == "training 3 steps · ETA 1m30s · loss 2.5"


def test_matrix_eta_from_finished_walls_estimates_and_the_running_cell():
    assert matrix_eta([], 3) is None  # nothing to go on
    assert matrix_eta([100.0, 200.0], 0) == 0.0
    assert matrix_eta([100.0, 200.0], 3) == pytest.approx(450.0)  # 3 x mean 150
    assert matrix_eta([100.0, 200.0], 3, current_elapsed=100.0) == pytest.approx(350.0)
    assert matrix_eta([100.0], 2, current_elapsed=500.0) == pytest.approx(100.0)  # running cell overdue: 0 left
    # the plan's estimates win; a cell without one takes the finished mean
    assert matrix_eta([], 2, 0.0, [60.0, 120.0]) == pytest.approx(180.0)
    assert matrix_eta([100.0], 3, 30.0, [60.0, None, 120.0]) == pytest.approx(30.0 + 100.0 + 120.0)
    assert matrix_eta([], 2, 0.0, [60.0, None]) is None


def _cell(i: int):
    return SimpleNamespace(cell_id=f"c{i}", label=f"m/p/{i}/none")


def test_matrix_lines_show_elapsed_and_eta_after_each_cell():
    buf = io.StringIO()
    p = Progress(console=Console(file=buf, width=200, force_terminal=False))
    p.start_matrix("demo", 3)
    assert p.matrix_eta() is None
    p.start_cell(_cell(0))
    p.end_cell(_cell(0), {"status": "done", "wall_s": 120.0})
    assert p.matrix_eta() == pytest.approx(240.0)  # two cells left at the mean 120 s
    p.start_cell(_cell(1))
    p.end_cell(_cell(1), {"status": "done", "wall_s": 60.0})
    assert p.matrix_eta() == pytest.approx(90.0)
    p.start_cell(_cell(2))
    p.end_cell(_cell(2), {"status": "done", "wall_s": 60.0})
    out = buf.getvalue()
    assert "cell c0 done in 120 s; matrix 0s elapsed, 1/3 cells, ETA 4m00s" in out
    assert "2/3 cells, ETA 1m30s" in out
    assert "cell c2 done in 60 s\n" in out  # nothing left: no ETA


def test_matrix_eta_uses_the_estimates_the_runner_passes():
    p = Progress(quiet=True)
    p.start_matrix("demo", 2, estimates={"c0": 300.0, "c1": 60.0})
    assert p.matrix_eta() == pytest.approx(360.0)
    p.start_cell(_cell(1))  # runs out of plan order: its own estimate counts as the running one
    p.end_cell(_cell(1), {"status": "done", "wall_s": 50.0})
    assert p.matrix_eta() == pytest.approx(300.0)


def test_worker_progress_on_a_pipe_prints_every_n_seconds_and_the_end():
    buf = io.StringIO()
    p = Progress(console=Console(file=buf, width=200, force_terminal=False), every=3600)
    for d in range(11):
        p.update({"what": "x", "unit": "requests", "done": d, "total": 10, "t": float(d)})
    p.update({"what": "x", "unit": "requests", "done": 10, "total": 10, "t": 10.0})  # delivered again at exit
    lines = [ln for ln in buf.getvalue().splitlines() if "requests" in ln]
    assert len(lines) == 2  # the first record, then the final one; nothing in between within `every`
    assert "0/10" in lines[0] and "10/10" in lines[1]
    p.stage("evaluate")  # a new stage starts a fresh line
    p.update({"what": "y", "unit": "steps", "done": 1, "total": 5, "t": 1.0})
    assert "y 1/5 steps" in buf.getvalue()


def test_a_warning_reaches_stderr_even_when_quiet(capsys):
    Progress(quiet=True).warn("the DuckDB index is held")
    assert capsys.readouterr().err == "WARNING: the DuckDB index is held\n"


def test_lines_are_printed_as_text_never_as_markup():
    # a Ray worker's line on the driver: `[<cell> on <node>]` was read as a rich tag and dropped when the cell id
    # began with a letter (bench/faults.py then never saw its Ray scenarios' stages); `[/x]` raised MarkupError
    buf = io.StringIO()
    p = Progress(console=Console(file=buf, width=200, force_terminal=False))
    p.note("[b83f969805db on vm (node 63fb7021)] stage evaluate")
    p.note("reason: [/tmp/x] [Errno 2]")
    out = buf.getvalue()
    assert "[b83f969805db on vm (node 63fb7021)] stage evaluate" in out
    assert "reason: [/tmp/x] [Errno 2]" in out
