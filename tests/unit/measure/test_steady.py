"""The steady window: GuideLLM's warmup/cooldown by percent of the level's wall time; rates count what
happened in the window, latencies are of the requests wholly inside it (harness/measure/steady.py)."""

import pytest

from harness.measure.level import aggregate
from harness.measure.request import RequestRecord
from harness.measure.steady import part, window
from harness.spec.loadtest import SLO

T = 0.125  # binary fractions: boundaries and chunk times compare exactly


def rec(start, ttft, n=8, itl=T):
    return RequestRecord(
        ok=True,
        start=start,
        end=start + ttft + itl * (n - 1),
        ttft=ttft,
        itl=[itl] * (n - 1),
        prompt_tokens=16,
        output_tokens=n,
    )


def test_window_leaves_out_the_trimmed_share_of_wall_time_at_each_end():
    recs = [rec(float(i), T) for i in range(8)]  # one at a time, each 1 s: the level spans 0 .. 8 s
    assert window(recs, 0.125) == (0.0, 1.0, 7.0)
    assert window(recs, 0.0) == (0.0, 0.0, 8.0)
    assert window([], 0.1) is None


def test_steady_figures_of_a_synchronous_level():
    recs = [rec(float(i), T) for i in range(8)]
    st = aggregate("synchronous", 1, recs, steady_trim=0.125).steady
    assert st.windows == [[1.0, 7.0]] and st.duration_s == 6.0
    assert st.requests == 6  # started at 1..6 s, each finished by 7 s
    assert st.completed == 6  # finished at 2..7 s: (1, 7]
    assert st.req_s == pytest.approx(1.0)
    assert st.output_tok_s == pytest.approx(6 * 8 / 6)  # requests 1..6 stream all their chunks inside
    assert st.input_tok_s == pytest.approx(6 * 16 / 6)


def test_ramp_up_and_drain_are_left_out_of_latencies_but_kept_in_the_whole_level():
    # concurrency 2: the first wave's prefills queue (TTFT 0.5 s), the last wave decodes alone (fast ITL)
    recs = [rec(0.0, 0.5, 5), rec(0.0, 0.5, 5)]
    recs += [rec(s, T) for s in (1.0, 1.0, 2.0, 2.0)]
    recs += [rec(3.0, T, 8, 0.0625), rec(3.0, T, 8, 0.0625)]
    lv = aggregate("concurrency", 2, recs, steady_trim=0.1)
    assert lv.ttft_ms.mean == pytest.approx((2 * 500 + 6 * 125) / 8)
    assert lv.steady.requests == 4  # the middle two waves
    assert lv.steady.ttft_ms.mean == pytest.approx(125)
    assert lv.steady.itl_ms.mean == pytest.approx(125) and lv.itl_ms.mean < 125


def test_steady_goodput_counts_good_completions_in_the_window():
    recs = [rec(float(i), T if i % 2 else 0.5, 2, 0.5) for i in range(8)]  # odd i: TTFT 125 ms, else 500
    lv = aggregate("synchronous", 1, recs, SLO(ttft_ms=200), steady_trim=0.125)
    # the span is 0 .. 7.625 s; in (0.953, 6.672] completed the requests started at 0..5 s: 1, 3, 5 good
    assert lv.steady.completed == 6
    assert lv.steady.goodput_req_s == pytest.approx(3 / lv.steady.duration_s)
    assert lv.steady.slo_attainment == pytest.approx(3 / 6)
    assert lv.slo_attainment == pytest.approx(4 / 8)


def test_abandoned_requests_and_empty_levels():
    recs = [rec(0.0, T), RequestRecord(ok=False, start=50.0, end=50.0, abandoned=True, error="not completed")]
    p = part(recs, 0.1, None)
    assert p.duration_s == pytest.approx(0.8)  # the abandoned request does not stretch the window
    st = aggregate("synchronous", 1, [], steady_trim=0.1).steady
    assert st.duration_s == 0 and st.req_s is None and st.requests == 0
