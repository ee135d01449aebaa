"""Live progress of a long stage, end to end through a real subprocess: a fake stage (tests/fakes/
progress_worker.py) writes progress lines over about a second; run_module tails them and the parent's
callback and Progress receive done/total, a rate and an ETA, in plain-line mode and not at all when quiet."""

from __future__ import annotations

import io
import time

from rich.console import Console

from harness.proc import progress_to, run_module
from harness.progress import LiveLine, Progress


def _run(settings, tmp_path, **kw):
    run_module(
        "tests.fakes.progress_worker",
        ["--n", "10", "--sleep", "0.1"],
        tmp_path / "logs" / "fake.log",
        settings,
        stage="compress",
        timeout=60,
        **kw,
    )


def test_callback_gets_done_total_and_a_rate_while_the_stage_runs(settings, tmp_path):
    got: list[tuple[float, dict]] = []
    _run(settings, tmp_path, on_progress=lambda rec: got.append((time.monotonic(), rec)))
    recs = [r for _, r in got]
    assert [r["done"] for r in recs] == list(range(1, 11))  # every=0: one record per step, in order
    assert {r["total"] for r in recs} == {10} and {r["unit"] for r in recs} == {"steps"}
    assert recs[-1]["loss"] == 0.3 and recs[0]["what"] == "fake training"
    # forwarded while the child ran (not all at the end): ~0.9 s between the first and last arrival
    assert got[-1][0] - got[0][0] > 0.4
    line = LiveLine()
    for r in recs[:5]:
        line.update(r)
    assert 5 <= line.meter.rate <= 15  # 10 steps/s written, timestamps from the child
    assert 0.2 <= line.eta <= 1.2  # 5 steps left at ~10/s
    assert "5/10 steps" in line.text() and "ETA" in line.text() and "loss 0.6" in line.text()
    # the progress file is the stage's business only: gone when it ends
    assert not list((tmp_path / "logs").glob(".*.progress.jsonl"))


def test_progress_renders_plain_lines_through_the_cell_sink(settings, tmp_path):
    buf = io.StringIO()
    progress = Progress(console=Console(file=buf, width=200, force_terminal=False), every=0.3)
    with progress_to(progress.update):  # how harness/cell/ wires a stage
        _run(settings, tmp_path)
    out = buf.getvalue()
    lines = [ln for ln in out.splitlines() if "fake training" in ln]
    # a line every 0.3 s of a ~1 s stage and the final one, not one per record
    assert 2 <= len(lines) <= 6, out
    assert "10/10 steps" in lines[-1] and "ETA 0s" in lines[-1]
    assert any("steps/s" in ln for ln in lines)


def test_quiet_progress_prints_nothing(settings, tmp_path):
    buf = io.StringIO()
    progress = Progress(console=Console(file=buf, width=200, force_terminal=False), quiet=True, every=0.0)
    with progress_to(progress.update):
        _run(settings, tmp_path)
    assert buf.getvalue() == ""
