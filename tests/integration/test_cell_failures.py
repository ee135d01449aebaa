"""A cell fails at the stage where its server died, with the root cause from the server's log, and at
`measure` when a load level has more failed requests than load.max_failed allows; a few failures within
the threshold leave it done. A real `harness run` on the fake engine (tests/fakes/plugins.py)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.fakes.plugins import fake_run

DEATH_LOG = REPO / "tests" / "fixtures" / "server_logs" / "vllm_engine_dead.log"
WNA16 = "AttributeError: '_OpNamespace' '_C' object has no attribute 'cpu_gemm_wna16'"
# requests: 1 warmup, 2 synchronous (requests 2-3), 4 at concurrency 2 (4-7); the fake evaluator sends the 8th
LOAD = {
    "input_tokens": 16,
    "output_tokens": 4,
    "warmup_requests": 1,
    "profiles": [{"kind": "synchronous", "requests": 2}, {"kind": "concurrency", "levels": [2], "requests": 4}],
}


def run_cell(tmp_path: Path, server_args: str, load: dict = LOAD) -> dict:
    env, matrix = fake_run(
        tmp_path, "fake-fail", 1, load, DQBENCH_RESULTS=str(tmp_path / "results"), FAKE_SERVER_ARGS=server_args
    )
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(matrix)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    docs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "cells").glob("*.json")]
    assert len(docs) == 1, r.stderr
    assert r.returncode == (0 if docs[0]["status"] == "done" else 1), r.stderr
    return docs[0]


def test_server_dying_mid_measure_fails_the_cell_at_measure_with_the_root_cause(tmp_path):
    d = run_cell(tmp_path, f"--die-after 2 --death-log {DEATH_LOG}")  # the first synchronous request
    assert d["status"] == "failed" and d["failed_stage"] == "measure", d.get("reason")
    assert "exited with code 1" in d["reason"] and WNA16 in d["reason"]
    assert "cpu_gemm_wna16" in d["log_tail"] and "Traceback" not in d["reason"]
    assert [lv["profile"] for lv in d["perf"]["levels"]] == ["synchronous"]  # kept; concurrency never ran
    assert d["perf"]["levels"][0]["failed"] >= 1
    assert d["memory"]["host_peak_gib"] == d["memory"]["peak_gib"] > 0


def test_engine_dying_at_evaluate_fails_the_cell_at_evaluate_not_with_a_connection_error(tmp_path):
    d = run_cell(tmp_path, f"--die-after 8 --die-mode engine --death-log {DEATH_LOG}")
    assert d["status"] == "failed" and d["failed_stage"] == "evaluate", d.get("reason")
    assert "engine died" in d["reason"] and WNA16 in d["reason"]
    assert "HTTPError" not in d["reason"] and "cpu_gemm_wna16" in d["log_tail"]
    assert [lv["completed"] for lv in d["perf"]["levels"]] == [2, 4]  # measure was fine and is kept


def test_failed_requests_beyond_the_threshold_fail_the_cell_at_measure(tmp_path):
    d = run_cell(tmp_path, "--fail-every 3")  # request 3: the second synchronous one
    assert d["status"] == "failed" and d["failed_stage"] == "measure", d.get("reason")
    assert d["reason"].startswith("measure: load level synchronous: 1/2 requests failed")
    assert "load.max_failed.synchronous" in d["reason"] and "first error: HTTP 500" in d["reason"]
    assert len(d["perf"]["levels"]) == 1


def test_failed_requests_within_the_threshold_leave_the_cell_done(tmp_path):
    load = dict(LOAD, max_failed={"synchronous": 0.0, "other": 0.3})
    d = run_cell(tmp_path, "--fail-every 5", load)  # request 5: 1 of 4 at concurrency 2 (25 %)
    assert d["status"] == "done", d.get("reason")
    assert [lv["failed"] for lv in d["perf"]["levels"]] == [0, 1] and d["perf"]["headline"]["failed_requests"] == 1
    m = d["memory"]
    assert m["host_peak_gib"] == m["peak_gib"] > 0
    if m["gpu_peak_gib"] is None:  # a CPU host
        assert m["gpu_what"].startswith("not measured")
