"""Goodput and SLO attainment on synthetic per-request records, against values computed by hand with
vLLM's definition (vllm/benchmarks/serve.py: a completed request is good when every objective given holds,
at or below the bound; TPOT of a one-token request is 0; goodput = good / the level's duration)."""

import pytest

from harness.measure.level import aggregate
from harness.measure.request import RequestRecord
from harness.measure.slo import is_good
from harness.spec.loadtest import SLO


def rec(start, ttft, n, itl, ok=True, end=None):
    if not ok:
        return RequestRecord(ok=False, start=start, end=end, error="HTTP 500")
    return RequestRecord(
        ok=True,
        start=start,
        end=start + ttft + itl * (n - 1),
        ttft=ttft,
        itl=[itl] * (n - 1),
        prompt_tokens=10,
        output_tokens=n,
    )


# start, TTFT, tokens, ITL                                     TTFT    TPOT    e2e
RECORDS = [
    rec(0.0, 0.100, 5, 0.050),  # good everywhere                 100 ms   50 ms  300 ms
    rec(0.5, 0.600, 5, 0.050),  # TTFT too slow                   600      50     800
    rec(1.0, 0.200, 5, 0.200),  # TPOT too slow                   200     200    1000
    rec(1.5, 0.100, 1, 0.0),  # one token: TPOT counts as 0       100       -     100
    rec(2.0, 0, 0, 0, ok=False, end=2.5),  # failed: never good
]


def test_goodput_and_attainment_match_the_hand_computed_values():
    lv = aggregate("poisson", 2.0, RECORDS, SLO(ttft_ms=500, tpot_ms=100))
    # the level spans 0.0 .. 2.5 s; good: requests 1 and 4
    assert lv.duration_s == pytest.approx(2.5)
    assert lv.goodput_req_s == pytest.approx(2 / 2.5)
    assert lv.slo_attainment == pytest.approx(2 / 5)
    assert lv.req_s == pytest.approx(4 / 2.5)  # goodput <= throughput, equal only when every request is good
    assert lv.slo_met is False  # 40 % < the default 90 %


def test_each_objective_alone():
    assert aggregate("concurrency", 4, RECORDS, SLO(e2e_ms=800)).slo_attainment == pytest.approx(3 / 5)
    assert aggregate("concurrency", 4, RECORDS, SLO(tpot_ms=60)).slo_attainment == pytest.approx(3 / 5)
    assert aggregate("concurrency", 4, RECORDS, SLO(ttft_ms=99)).goodput_req_s == 0.0


def test_a_bound_is_met_at_equality_as_in_vllm():
    r = rec(0.0, 0.5, 1, 0.0)
    assert is_good(r, SLO(ttft_ms=500)) and not is_good(r, SLO(ttft_ms=499.9))


def test_the_level_meets_the_slo_when_attainment_reaches_the_percentile():
    assert aggregate("poisson", 2.0, RECORDS, SLO(ttft_ms=500, tpot_ms=100, percentile=40)).slo_met is True
    assert aggregate("poisson", 2.0, RECORDS[:4], SLO(e2e_ms=1000, percentile=100)).slo_met is True


def test_no_slo_no_goodput():
    lv = aggregate("synchronous", 1, RECORDS)
    assert lv.goodput_req_s is None and lv.slo_attainment is None and lv.slo_met is None
    assert lv.steady is not None and lv.steady.goodput_req_s is None
