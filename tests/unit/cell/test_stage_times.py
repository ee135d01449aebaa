"""harness/cell/stage_times.py: a step's fixed costs as `<step>.<part>` timings, from what it left behind
(lm-eval's log of a real evaluate step: tests/fixtures/worker_logs/lmeval_evaluate.log)."""

import os
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.cell.stage_times import evaluate_parts, shift_parts, step_parts

LOG = Path(__file__).resolve().parents[2] / "fixtures" / "worker_logs" / "lmeval_evaluate.log"
STARTED = datetime(2026, 12, 6, 13, 23, 8).timestamp()  # the step began 8.3 s before lm-eval's first line
TOTAL = 230.0


def test_evaluate_parts_name_each_tasks_setup_and_sum_to_the_step():
    got = evaluate_parts(LOG.read_text(), STARTED, TOTAL)
    assert got["start"] == pytest.approx(16.165, abs=1e-3)  # -> the first "Running ... requests" at 13:23:24.165
    assert got["imports"] == pytest.approx(10.49, abs=1e-3)  # -> "Initializing dq-local-completions model"
    assert [k for k in got if k.startswith("setup.")] == [
        "setup.lambada_openai",
        "setup.arc_easy",
        "setup.arc_challenge",
        "setup.hellaswag",
        "setup.gsm8k",
    ]
    # hellaswag's set-up: the previous phase ends at lm-eval's next line (13:25:34.850), its requests begin
    # at 13:25:43.095
    assert got["setup.hellaswag"] == pytest.approx(8.245, abs=1e-3)
    parts = sum(v for k, v in got.items() if k != "imports")  # imports is a part of start
    assert parts == pytest.approx(TOTAL, abs=0.01)


def test_evaluate_parts_ignore_an_earlier_attempts_lines_and_a_log_without_requests():
    assert evaluate_parts(LOG.read_text(), STARTED + 3600, 10.0) == {}
    assert evaluate_parts("2026-12-06 13:23:16,307 INFO harness.worker: LMEvalJob: {}", STARTED, 10.0) == {}


def test_shift_parts_from_when_its_dumps_were_written(tmp_path):
    for name, at in (("logprobs.npz", 12.0), ("logprobs-repeat.npz", 20.0)):
        (tmp_path / name).write_bytes(b"")
        os.utime(tmp_path / name, (STARTED + at, STARTED + at))
    assert shift_parts(tmp_path, STARTED, 21.5) == {"dump": 12.0, "dump_repeat": 8.0, "compare": 1.5}
    assert shift_parts(tmp_path, STARTED + 100, 5.0) == {}  # dumps of an earlier attempt are not this one's


def test_a_split_that_fails_to_read_leaves_the_steps_total_alone(tmp_path):
    class Broken:
        def startup_phases(self, handle):
            raise RuntimeError("log vanished")

    run = SimpleNamespace(server=Broken(), handle=object())
    assert step_parts(run, "serve", STARTED, 5.0, 0) == {}
    assert step_parts(run, "measure", STARTED, 5.0, 0) == {}  # no split for this step
    run.server = SimpleNamespace(startup_phases=lambda h: {"import": 1.0, "ready": 4.0})
    assert step_parts(run, "serve", STARTED, 5.0, 0) == {"serve.import": 1.0, "serve.ready": 4.0}
