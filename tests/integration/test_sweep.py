"""The sweep profile against a fake OpenAI server of fixed capacity (a real subprocess on loopback): two slots,
each request holding one for 0.1 s (TTFT 50 ms + 5 x 10 ms), so 20 requests/s at most and ~10 one at a time."""

import sys

import pytest

from harness.measure import run as run_mod
from harness.measure import sweep
from harness.measure.loadgen import LoadGenerator
from harness.result import Perf
from harness.serve.base import free_port, launch
from harness.spec.loadtest import LoadSpec, SweepProfile

PROMPT = list(range(32))
CAPACITY = 20.0  # slots / (ttft + (tokens - 1) * itl) = 2 / 0.1


@pytest.fixture
def server(tmp_path):
    port = free_port()
    args = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port)]
    args += ["--ttft", "0.05", "--itl", "0.01", "--slots", "2"]
    h = launch("fake", args, {}, port, "fake", tmp_path / "fake.log", "/health", 30)
    yield h
    h.stop(grace=2)


def test_a_rate_beyond_capacity_saturates_and_one_below_does_not(server):
    gen = LoadGenerator(server.base_url, "fake", output_tokens=6, timeout=30)
    spec = SweepProfile(kind="sweep", requests=30, max_concurrency=8)
    below = gen.records("constant", [PROMPT] * 16, 8.0)
    due = sorted(r.scheduled for r in below if r.scheduled is not None)
    assert len(due) == 16 and all(b - a == pytest.approx(1 / 8.0) for a, b in zip(due, due[1:]))  # constant gaps
    # the floor: the server's own TTFT with room for a loaded host's jitter
    v = sweep.judge([below], 8.0, spec, sync_ttft_s=0.1)
    assert v.reason is None and v.achieved_req_s == pytest.approx(8.0, rel=0.1)
    over = gen.records("constant", [PROMPT] * 30, 2 * CAPACITY)
    v = sweep.judge([over], 2 * CAPACITY, spec, sync_ttft_s=0.05)
    assert v.saturated and "of the 40 req/s sent" in v.reason
    assert 0.6 * CAPACITY < v.achieved_req_s < 1.1 * CAPACITY  # answers leave at the server's capacity
    assert v.ttft_growth > 2  # and the queue grew through the level


def test_measure_sweeps_from_the_baseline_to_the_capacity(server, monkeypatch):
    monkeypatch.setattr(run_mod, "build_requests", lambda load, src, n: [PROMPT] * n)
    load = LoadSpec.model_validate(
        {
            "output_tokens": 6,
            "warmup_requests": 2,
            "slo": {"ttft_ms": 1000},
            "profiles": [{"kind": "sweep", "rates": 2, "requests": 12, "max_concurrency": 8}],
        }
    )
    out = run_mod.measure(server.base_url, "fake", load, "unused")
    s = Perf.model_validate(out.model_dump(mode="json")).sweep
    assert out.stopped is None and s is not None
    assert 5 < s.sync_req_s < 11  # one request at a time: 0.1 s each, plus the client's share
    assert 0.6 * CAPACITY < s.max_req_s < 1.05 * CAPACITY
    assert s.planned_rates == pytest.approx(sweep.spaced_rates(s.sync_req_s, s.max_req_s, 2))
    assert [lv.profile for lv in out.levels] == ["synchronous", "concurrency"] + ["constant"] * len(s.rates)
    assert run_mod.planned_levels(load, out.sweep) == len(out.levels)
    # below the capacity the first rate keeps up and meets a loose SLO
    assert s.rates[0] == pytest.approx(s.planned_rates[0]) and s.achieved_req_s[0] > 0.9 * s.rates[0]
    assert s.max_rate_at_slo_req_s is not None and s.max_rate_at_slo_req_s >= s.rates[0]
