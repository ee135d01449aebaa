"""The sweep profile's parts on synthetic levels: GuideLLM's rate spacing, the bound on a rate level's
requests, the saturation judgement, and the adaptive order (sync -> max -> rates, stopping once saturated)."""

import numpy as np
import pytest

from harness.measure import run as run_mod
from harness.measure import sweep
from harness.measure.level import combine
from harness.measure.loadgen import LoadGenerator
from harness.measure.request import RequestRecord
from harness.result import Level, Perf
from harness.spec.loadtest import SLO, LoadSpec, SweepProfile


def queue(rate: float, n: int, slots: int, service: float, ttft0: float = 0.0, sync: bool = False):
    """Records of a FIFO server with `slots` slots, each request holding one for `service` s (its first token
    after `ttft0` s of it), fed constant arrivals at `rate` req/s (or one at a time: `sync`). It keeps up
    below slots / service req/s and queues without bound above."""
    free = [0.0] * slots
    out, t = [], 0.0
    for i in range(n):
        arrive = t if sync else i / rate
        k = min(range(slots), key=lambda j: free[j])
        begin = max(arrive, free[k])
        free[k] = end = begin + service
        out.append(RequestRecord(ok=True, start=arrive, end=end, ttft=begin - arrive + ttft0, output_tokens=4))
        t = end
    return out


def profile(**kw) -> SweepProfile:
    return SweepProfile.model_validate({"kind": "sweep", "max_concurrency": 4, **kw})


@pytest.mark.parametrize(("lo", "hi", "n"), [(1.0, 5.0, 4), (0.37, 2.9, 1), (2.0, 3.0, 7)])
def test_rates_are_guidellms_linspace(lo, hi, n):
    # GuideLLM: np.linspace(synchronous_rate, throughput_rate, sweep_size - 1)[1:] with sweep_size = n + 2
    assert sweep.spaced_rates(lo, hi, n) == pytest.approx(list(np.linspace(lo, hi, n + 2 - 1)[1:]))


def test_rates_increase_even_when_the_maximum_reads_below_the_baseline():
    assert sweep.spaced_rates(5.0, 4.0, 2) == pytest.approx([4.5, 5.0])


def test_a_rate_level_sends_no_more_than_max_level_s_of_arrivals():
    assert sweep.level_requests(2.0, 16, 120) == 16
    assert sweep.level_requests(0.1, 16, 30) == 4  # at 0, 10, 20, 30 s
    assert sweep.level_requests(0.001, 16, 30) == 2  # still one gap to time


def test_a_server_that_keeps_up_is_not_saturated():
    # capacity 2 / 0.5 s = 4 req/s; 3 req/s arrive
    v = sweep.judge([queue(3.0, 16, 2, 0.5, 0.05)], 3.0, profile(), sync_ttft_s=0.05)
    assert v.reason is None and v.achieved_req_s == pytest.approx(3.0)
    assert v.ttft_growth == pytest.approx(1.0)


def test_arrivals_beyond_capacity_are_saturation():
    v = sweep.judge([queue(8.0, 16, 2, 0.5, 0.05)], 8.0, profile(), sync_ttft_s=0.05)
    assert v.achieved_req_s == pytest.approx(4.0, rel=0.05)  # the server's capacity
    assert v.saturated and "% of the 8 req/s sent (below min_achieved 90%)" in v.reason


def test_queues_growing_through_the_level_are_saturation_even_at_the_rate_sent():
    # answers leave at the rate sent, but each waits longer than the one before: a queue is building
    recs = [
        RequestRecord(ok=True, start=i / 4, end=i / 4 + 1.0, ttft=0.1 + 0.05 * i, output_tokens=4) for i in range(12)
    ]
    v = sweep.judge([recs], 4.0, profile(), sync_ttft_s=0.1)
    assert v.achieved_req_s == pytest.approx(4.0)
    assert v.saturated and "queues growing at 4 req/s" in v.reason and "ttft_growth 2x" in v.reason
    assert v.ttft_growth == pytest.approx(0.575 / 0.175)  # medians of the last and first four
    assert not sweep.judge([recs], 4.0, profile(ttft_growth=4.0), sync_ttft_s=0.1).saturated


def test_the_first_thirds_ttft_is_floored_at_the_synchronous_one():
    # 2 ms -> 6 ms is "3x" on a near-idle server: jitter, not a queue, against a 50 ms idle TTFT
    recs = [
        RequestRecord(ok=True, start=i, end=i + 0.5, ttft=0.002 if i < 4 else 0.006, output_tokens=4) for i in range(12)
    ]
    assert sweep.judge([recs], 1.0, profile(), sync_ttft_s=0.05).reason is None
    assert sweep.judge([recs], 1.0, profile(), sync_ttft_s=None).saturated


def test_failures_and_empty_levels_are_saturation():
    ok = queue(1.0, 8, 2, 0.1)
    assert sweep.judge([ok], 1.0, profile(), 0.1, failures="3/8 requests failed").reason == "3/8 requests failed"
    none = [RequestRecord(ok=False, start=0, end=1, error="timeout")] * 8
    assert "fewer than two requests completed" in sweep.judge([none], 1.0, profile(), 0.1).reason


def test_with_repeats_the_worst_run_decides():
    fine, slow = queue(3.0, 12, 2, 0.5), queue(3.0, 12, 1, 0.5)  # capacity 4 req/s, then 2 req/s
    assert not sweep.judge([fine, fine], 3.0, profile(), 0.0).saturated
    v = sweep.judge([fine, slow], 3.0, profile(), 0.0)
    assert v.saturated and v.achieved_req_s == pytest.approx(2.0, rel=0.05)


def simulated(slots: int, service: float, slo: SLO | None = None, fail_at: float | None = None):
    """A level runner over the queue model; records what it was asked to run."""
    asked = []

    def run_level(kind, level, seed, batches, check):
        asked.append((kind, round(level, 6), seed, [len(b) for b in batches]))
        runs = []
        for b in batches:
            if kind == "synchronous":
                runs.append(queue(1, len(b), slots, service, 0.01, sync=True))
            elif kind == "concurrency":  # closed loop: the server's capacity
                runs.append(queue(1e9, len(b), slots, service, 0.01))
            else:
                runs.append(queue(level, len(b), slots, service, 0.01))
        if fail_at is not None and kind == "constant" and level >= fail_at:
            for r in runs[0][:4]:
                r.ok, r.error = False, "timeout"
        lv = combine(kind, level, runs, slo)
        return lv, runs, check(lv)

    return asked, run_level


def prompts_for(spec: SweepProfile) -> sweep.SweepPrompts:
    counter = iter(range(10**6))
    return sweep.SweepPrompts.take(spec, lambda n: [next(counter) for _ in range(n)])


def never(*_a):
    return None


def test_the_sweep_runs_sync_then_max_then_rates_and_stops_once_saturated():
    # capacity 2 / 0.5 = 4 req/s; one at a time 2 req/s; the closed-loop maximum 4 req/s
    spec = profile(rates=4, requests=12, max_concurrency=4)
    asked, run_level = simulated(2, 0.5)
    levels, block, stop = sweep.run_sweep(prompts_for(spec), run_level, never, never, never, None)
    assert stop is None
    assert [a[0] for a in asked[:2]] == ["synchronous", "concurrency"] and asked[1][1] == 4
    assert block.sync_req_s == pytest.approx(2.0) and block.max_req_s == pytest.approx(4.0, rel=0.1)
    assert block.planned_rates == pytest.approx(sweep.spaced_rates(block.sync_req_s, block.max_req_s, 4))
    # every planned rate is at most the capacity: none saturates, all run
    assert block.rates == block.planned_rates and block.saturation_req_s is None
    assert block.max_sustained_req_s == block.rates[-1]
    assert block.max_rate_at_slo_req_s is None  # no SLO
    assert [lv.profile for lv in levels] == ["synchronous", "concurrency"] + ["constant"] * 4
    assert [a[2] for a in asked[2:]] == [0, 1, 2, 3]  # rate level k draws with seed + k


def test_a_saturated_rate_ends_the_sweep_and_the_rate_at_slo_is_below_it():
    spec = profile(rates=4, requests=12, max_concurrency=4)
    asked, run_level = simulated(2, 0.5, slo=SLO(ttft_ms=100), fail_at=3.4)
    levels, block, stop = sweep.run_sweep(
        prompts_for(spec),
        run_level,
        never,
        never,
        lambda lv: f"{lv.failed} failed" if lv.failed else None,
        SLO(ttft_ms=100),
    )
    assert stop is None and len(levels) == 2 + 3
    assert block.rates == pytest.approx(block.planned_rates[:3])
    assert block.saturation_req_s == block.rates[2] and block.saturation_reason == "4 failed"
    assert block.stopped_early is True
    assert block.max_rate_at_slo_req_s == block.max_sustained_req_s == block.rates[1]
    Perf.model_validate({"sweep": block.model_dump(mode="json")})  # the stored shape


def test_a_failed_synchronous_level_stops_the_load_test():
    spec = profile()
    asked, run_level = simulated(2, 0.5)
    levels, block, stop = sweep.run_sweep(prompts_for(spec), run_level, lambda lv: "engine died", never, never, None)
    assert stop == "engine died" and len(levels) == 1 and block.rates == []


def test_rate_levels_are_bounded_in_time():
    spec = profile(rates=2, requests=12, max_level_s=2.1)
    asked, run_level = simulated(2, 0.5)
    sweep.run_sweep(prompts_for(spec), run_level, never, never, never, None)
    # sync 2 req/s, max 4: rates 3 and 4 req/s send 1 + floor(2.1 s * rate) requests
    assert [a[3] for a in asked] == [[12], [12], [7], [9]]


def test_measure_runs_a_sweep_and_stores_its_findings(monkeypatch):
    monkeypatch.setattr(run_mod, "build_requests", lambda load, src, n: list(range(n)))
    sent = []

    def records(self, kind, prompts, level, seed=0):
        sent.append((kind, len(prompts)))
        if kind == "synchronous":
            return queue(1, len(prompts), 2, 0.5, 0.01, sync=True)
        return queue(1e9 if kind == "concurrency" else level, len(prompts), 2, 0.5, 0.01)

    monkeypatch.setattr(LoadGenerator, "records", records)
    load = LoadSpec.model_validate(
        {
            "warmup_requests": 0,
            "profiles": [
                {"kind": "synchronous", "requests": 2},
                {"kind": "sweep", "rates": 2, "requests": 8, "max_concurrency": 4},
            ],
        }
    )
    out = run_mod.measure("http://x/v1", "m", load, "tok")
    assert [k for k, _ in sent] == ["synchronous", "synchronous", "concurrency", "constant", "constant"]
    assert out.stopped is None and out.sweep is not None and out.sweep.rates and len(out.levels) == 5
    assert run_mod.planned_levels(load, out.sweep) == 5 == 1 + 2 + len(out.sweep.rates)
    assert run_mod.planned_levels(load, None) == 3  # a sweep with no findings is not complete
    assert Perf.model_validate(out.model_dump(mode="json")).sweep.sync_req_s == pytest.approx(2.0)
    assert run_mod.prompt_count(load.profiles[1]) == 8 * 4


def test_level_problem_names_a_constant_rate():
    lv = Level(profile="constant", level=2.5, requests=10, completed=5, failed=5, first_error="boom")
    assert "load level constant 2.5 req/s: 5/10" in run_mod.level_problem(
        lv, LoadSpec.model_fields["max_failed"].default_factory()
    )
