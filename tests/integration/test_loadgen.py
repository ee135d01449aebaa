"""The load generator against a fake OpenAI server with known timing (a real subprocess on loopback)."""

import sys
import time

import pytest

from harness.measure.loadgen import LoadGenerator
from harness.serve.base import free_port, launch


@pytest.fixture
def fake_server(tmp_path):
    def start(**kw):
        port = free_port()
        args = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port)]
        for k, v in kw.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        h = launch("fake", args, {}, port, "fake", tmp_path / f"fake-{port}.log", "/health", 30)
        started.append(h)
        return h

    started = []
    yield start
    for h in started:
        h.stop(grace=2)


PROMPT = list(range(32))


def test_synchronous_timings_match_the_server(fake_server):
    h = fake_server(ttft=0.2, itl=0.02)
    gen = LoadGenerator(h.base_url, "fake", output_tokens=11, timeout=30)
    lv = gen.synchronous([PROMPT] * 3)
    assert (lv.completed, lv.failed) == (3, 0)
    assert 190 <= lv.ttft_ms.p50 <= 320
    assert 18 <= lv.itl_ms.p50 <= 45
    assert 18 <= lv.tpot_ms.p50 <= 45
    # sequential: the three requests do not overlap
    assert lv.duration_s >= 3 * (0.2 + 10 * 0.02)
    assert lv.output_tok_s == pytest.approx(33 / lv.duration_s)


def test_concurrency_overlaps_requests(fake_server):
    h = fake_server(ttft=0.3, itl=0.0)
    gen = LoadGenerator(h.base_url, "fake", output_tokens=2, timeout=30)
    t = time.perf_counter()
    lv = gen.concurrency([PROMPT] * 8, 8)
    # eight 0.3 s requests at concurrency 8 take ~0.3 s, not 2.4 s
    assert time.perf_counter() - t < 1.5
    assert lv.completed == 8 and lv.req_s > 8 / 1.5


def test_concurrency_limit_is_respected(fake_server):
    h = fake_server(ttft=0.25, itl=0.0)
    gen = LoadGenerator(h.base_url, "fake", output_tokens=1, timeout=30)
    lv = gen.concurrency([PROMPT] * 6, 2)
    assert lv.duration_s >= 3 * 0.25 * 0.95  # three waves of two


def test_failures_are_counted_not_raised(fake_server):
    h = fake_server(ttft=0.01, itl=0.0, fail_every=2)
    gen = LoadGenerator(h.base_url, "fake", output_tokens=3, timeout=30)
    lv = gen.concurrency([PROMPT] * 6, 3)
    assert (lv.completed, lv.failed) == (3, 3)
    assert any("HTTP 500" in e for e in lv.errors)


def test_poisson_arrivals_spread_requests(fake_server):
    h = fake_server(ttft=0.01, itl=0.0)
    gen = LoadGenerator(h.base_url, "fake", output_tokens=2, timeout=30)
    lv = gen.poisson([PROMPT] * 20, rate=20.0, seed=1)
    assert lv.completed == 20
    # 19 exponential gaps of mean 50 ms: ~0.95 s; bounded well away from "all at once"
    assert 0.3 < lv.duration_s < 3.0


def test_unreachable_server_is_a_failed_request():
    gen = LoadGenerator(f"http://127.0.0.1:{free_port()}/v1", "fake", output_tokens=2, timeout=5)
    lv = gen.synchronous([PROMPT])
    assert lv.failed == 1 and lv.errors


def test_fresh_connection_per_request_when_the_engine_drops_pooled_ones(fake_server):
    h = fake_server(ttft=0.02, itl=0.002)
    gen = LoadGenerator(h.base_url, "fake", output_tokens=2, timeout=30, keepalive=False)
    res = gen.concurrency([PROMPT] * 8, 4)
    assert res.completed == 8 and res.failed == 0 and res.retried == 0
