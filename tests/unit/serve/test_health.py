"""ServerHandle.health_problem / root_cause: a dead engine is told apart from a live one, and the line that
says why is read from its log (a real vLLM excerpt: the CPU int4 kernel missing from the wheel)."""

import subprocess
import sys

import pytest

from harness.serve.base import ServerHandle, root_cause
from tests.conftest import REPO

LOGS = REPO / "tests" / "fixtures" / "server_logs"
WNA16 = "AttributeError: '_OpNamespace' '_C' object has no attribute 'cpu_gemm_wna16'"


def test_root_cause_of_a_vllm_engine_death_is_the_exception_before_engine_dead_error():
    assert root_cause((LOGS / "vllm_engine_dead.log").read_text()) == WNA16


def test_root_cause_of_a_llamacpp_abort():
    assert "GGML_ASSERT(ne00 % QK8_0 == 0) failed" in root_cause((LOGS / "llamacpp_abort.log").read_text())
    text = "srv load: ok\nterminate called after throwing an instance of 'std::runtime_error'\n  what():  bad kv\n"
    assert root_cause(text) == "what():  bad kv"


def test_root_cause_without_an_error_line_is_none_and_a_killed_core_is_named():
    assert root_cause("INFO 05-12 09:14:03 [api_server.py:1885] Starting vLLM API server\n") is None
    killed = (
        "(APIServer pid=1) ERROR 05-12 09:14:05 [core_client.py:564] Engine core proc EngineCore_DP0 died "
        "unexpectedly, shutting down client.\n"
        "(APIServer pid=1) ERROR 05-12 09:14:05 [async_llm.py:480] vllm.v1.engine.exceptions.EngineDeadError: "
        "EngineCore encountered an issue. See stack trace (above) for the root cause.\n"
    )
    assert root_cause(killed) == "Engine core proc EngineCore_DP0 died unexpectedly, shutting down client."


@pytest.fixture
def sleeper(tmp_path):
    procs = []

    def start(code: str = "import time; time.sleep(60)") -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code])
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def handle(proc, log, offset=0) -> ServerHandle:
    return ServerHandle(
        engine="vllm",
        base_url="http://127.0.0.1:9/v1",
        model_name="m",
        port=9,
        proc=proc,
        log_path=log,
        log_offset=offset,
    )


def test_engine_death_in_the_log_of_a_live_server(tmp_path, sleeper):
    log = tmp_path / "server.log"
    log.write_text("INFO: Application startup complete.\n")
    h = handle(sleeper(), log)
    assert h.health_problem() is None
    log.write_text(log.read_text() + (LOGS / "vllm_engine_dead.log").read_text())
    problem = h.health_problem()
    assert "vllm engine died" in problem and WNA16 in problem and f"pid {h.pid}" in problem and str(log) in problem


def test_an_earlier_attempts_death_in_the_same_log_is_not_this_servers(tmp_path, sleeper):
    log = tmp_path / "server.log"
    log.write_text((LOGS / "vllm_engine_dead.log").read_text())
    h = handle(sleeper(), log, offset=log.stat().st_size)
    assert h.health_problem() is None and h.root_cause() is None


def test_exited_server_reports_code_and_cause(tmp_path, sleeper):
    log = tmp_path / "server.log"
    log.write_text("RuntimeError: CUDA error: an illegal memory access was encountered\n")
    p = sleeper("raise SystemExit(3)")
    p.wait()
    problem = handle(p, log).health_problem()
    assert "exited with code 3" in problem and "illegal memory access" in problem


def test_failure_tail_keeps_the_cause_when_it_scrolled_out(tmp_path, sleeper):
    log = tmp_path / "server.log"
    noise = "".join(f"(APIServer pid=1) ERROR 05-12 09:14:06 [x.py:1] frame {i}\n" for i in range(100))
    log.write_text((LOGS / "vllm_engine_dead.log").read_text() + noise)
    tail = handle(sleeper(), log).failure_tail(lines=10)
    assert "cpu_gemm_wna16'" in tail and "frame 99" in tail and "[...]" in tail


def test_health_over_http(tmp_path, sleeper):
    log = tmp_path / "server.log"
    log.write_text("")
    problem = handle(sleeper(), log).health_problem(http=True)  # nothing listens on port 9
    assert "vllm /health did not answer" in problem
