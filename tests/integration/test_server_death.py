"""measure() against a fake server whose engine dies: the load test stops at once (requests in flight cut
off, the rest never sent) and says why, with the root cause from the server's log."""

import sys
import time

import pytest

import harness.measure.run as run
from harness.serve.base import free_port, launch
from harness.spec.loadtest import LoadSpec
from tests.conftest import REPO

DEATH_LOG = REPO / "tests" / "fixtures" / "server_logs" / "vllm_engine_dead.log"
WNA16 = "'_OpNamespace' '_C' object has no attribute 'cpu_gemm_wna16'"


@pytest.fixture
def server(tmp_path, monkeypatch):
    # no tokenizer needed: the prompts are token ids already
    monkeypatch.setattr(run, "build_requests", lambda load, src, n: [list(range(16))] * n)
    started = []

    def start(*extra):
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "tests.fakes.openai_server",
            "--port",
            str(port),
            "--ttft",
            "0.02",
            "--itl",
            "0.01",
            "--death-log",
            str(DEATH_LOG),
            *map(str, extra),
        ]
        h = launch("vllm", cmd, {}, port, "fake", tmp_path / f"server-{port}.log", "/health", 30)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop(grace=2)


def load(**kw):
    return LoadSpec(input_tokens=16, output_tokens=8, warmup_requests=1, **kw)


@pytest.mark.parametrize("mode", ["exit", "engine"])
def test_a_dying_engine_stops_the_load_test_within_a_level(server, mode):
    h = server("--die-after", 4, "--die-mode", mode)
    spec = load(
        profiles=[{"kind": "synchronous", "requests": 2}, {"kind": "concurrency", "levels": [2, 4], "requests": 400}]
    )
    t = time.monotonic()
    perf = run.measure(h.base_url, "fake", spec, "unused", health=h.health_problem)
    assert time.monotonic() - t < 15  # 400 requests of 8 tokens would take longer
    sync, conc = perf.levels  # concurrency 4 never ran
    assert sync.completed == 2 and conc.completed == 0  # request 4 (the first at concurrency 2) killed it
    assert conc.abandoned > 350 and conc.failed == conc.requests == 400
    assert WNA16 in perf.stopped and (
        "exited with code 1" in perf.stopped if mode == "exit" else "engine died" in perf.stopped
    )


def test_a_death_during_warmup_runs_no_level(server):
    h = server("--die-after", 1, "--die-mode", "engine")
    perf = run.measure(
        h.base_url, "fake", load(profiles=[{"kind": "synchronous", "requests": 50}]), "unused", health=h.health_problem
    )
    assert perf.levels == [] and WNA16 in perf.stopped and perf.headline == {}


def test_failed_requests_beyond_the_threshold_stop_the_load_test(server):
    h = server("--fail-every", 5)
    spec = load(
        profiles=[{"kind": "synchronous", "requests": 3}, {"kind": "concurrency", "levels": [2, 4], "requests": 20}],
        max_failed={"synchronous": 0.0, "other": 0.15},
    )
    perf = run.measure(h.base_url, "fake", spec, "unused", health=h.health_problem)
    # requests 1 (warmup), 2-4 (synchronous): none is a 5th; concurrency 2: 4 of 20 fail (20 %)
    assert [lv.failed for lv in perf.levels] == [0, 4]
    assert perf.stopped.startswith("load level concurrency 2: 4/20 requests failed, more than the 15%")
    assert "first error: HTTP 500" in perf.stopped


def test_a_healthy_run_is_not_stopped(server):
    h = server()
    perf = run.measure(
        h.base_url,
        "fake",
        load(profiles=[{"kind": "concurrency", "levels": [2], "requests": 6}]),
        "unused",
        health=h.health_problem,
    )
    assert perf.stopped is None and perf.levels[0].completed == 6 and perf.levels[0].abandoned == 0


def test_a_hung_engine_is_caught_by_the_periodic_check(server):
    """No request fails when an engine hangs: the watcher's periodic look cuts the level short."""
    from harness.measure.loadgen import LoadGenerator

    h = server("--ttft", 30)  # every request hangs
    t0 = time.monotonic()
    gen = LoadGenerator(
        h.base_url,
        "fake",
        4,
        timeout=60,
        check_every=0.2,
        stop=lambda: "engine hung" if time.monotonic() - t0 > 1.0 else None,
    )
    lv = gen.concurrency([list(range(16))] * 10, 2)
    assert time.monotonic() - t0 < 5
    assert (lv.completed, lv.failed, lv.abandoned) == (0, 10, 10) and lv.first_error == "not completed: engine hung"
