import pytest

from harness.measure.level import aggregate
from harness.measure.request import RequestRecord
from harness.measure.stats import percentile, summarize
from harness.result_facts import headline


def test_percentile_matches_numpy_linear_interpolation():
    xs = [15, 20, 35, 40, 50]
    # numpy.percentile(xs, q) for these q: 15, 35, 48, 49.6
    assert percentile(xs, 0) == 15
    assert percentile(xs, 50) == 35
    assert percentile(xs, 90) == pytest.approx(46.0)
    assert percentile(xs, 99) == pytest.approx(49.6)
    assert percentile(list(reversed(xs)), 50) == 35
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_summarize_scales_units():
    s = summarize([0.1, 0.2, 0.3], scale=1000)
    assert s.mean == pytest.approx(200) and s.p50 == pytest.approx(200)
    assert summarize([]).p99 is None


def rec(start, ttft, n, itl, ok=True):
    end = start + ttft + itl * (n - 1)
    return RequestRecord(
        ok=ok,
        start=start,
        end=end,
        ttft=ttft if ok else None,
        itl=[itl] * (n - 1) if ok else [],
        prompt_tokens=10,
        output_tokens=n if ok else 0,
        error=None if ok else "HTTP 500",
    )


def test_aggregate_throughput_and_latency():
    rs = [rec(0.0, 0.1, 11, 0.01), rec(0.0, 0.3, 11, 0.03), rec(0.2, 0.1, 1, 0.01, ok=False)]
    lv = aggregate("concurrency", 2, rs)
    assert (lv.requests, lv.completed, lv.failed) == (3, 2, 1)
    # duration: first start 0.0 -> last end (0.3 + 10 x 0.03 = 0.6)
    assert lv.duration_s == pytest.approx(0.6)
    assert lv.output_tok_s == pytest.approx(22 / 0.6)
    assert lv.req_s == pytest.approx(2 / 0.6)
    assert lv.ttft_ms.p50 == pytest.approx(200)
    # TPOT = (e2e - ttft) / (n - 1) = itl for evenly spaced tokens
    assert lv.tpot_ms.p50 == pytest.approx(20)
    assert lv.itl_ms.p50 == pytest.approx(20)
    assert lv.errors == ["HTTP 500"]


def test_headline_takes_latency_from_sync_and_throughput_from_top_concurrency():
    sync = aggregate("synchronous", 1, [rec(0, 0.1, 5, 0.02)])
    c4 = aggregate("concurrency", 4, [rec(0, 0.2, 5, 0.05)] * 4)
    c16 = aggregate("concurrency", 16, [rec(0, 0.5, 5, 0.1)] * 16)
    h = headline([sync, c4, c16])
    assert h["ttft_ms_p50"] == pytest.approx(100)
    assert h["output_tok_s"] == pytest.approx(c16.output_tok_s) and h["top_concurrency"] == 16
    assert h["failed_requests"] == 0
