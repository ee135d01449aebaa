"""The bound on the inter-token latencies a load run keeps (harness/measure/itl_budget.py): under it every figure
is the exact one computed as before (same code, same numbers); past it records keep a sample, the mean stays
exact and the percentiles' error is measured here by simulation; memory stays bounded."""

from __future__ import annotations

import random
import statistics

import pytest

from harness.measure.itl_budget import SAMPLE_PER_REQUEST, ItlBudget, itl_summary
from harness.measure.level import aggregate
from harness.measure.request import RequestRecord
from harness.measure.stats import summarize


def _run(n: int, tokens: int, seed: int, slow_every: int = 7) -> list[RequestRecord]:
    """`n` completed requests of `tokens` chunks; gaps lognormal, every `slow_every`-th request 3x slower (a
    mixture, so a request's gaps are not exchangeable with another's: the sample weights matter)."""
    rng = random.Random(seed)
    out = []
    t = 0.0
    for i in range(n):
        scale = 3.0 if i % slow_every == 0 else 1.0
        gaps = [scale * rng.lognormvariate(-4.0, 0.35) for _ in range(tokens - 1)]
        ttft = 0.05 * scale
        out.append(
            RequestRecord(
                ok=True, start=t, end=t + ttft + sum(gaps), ttft=ttft, itl=gaps, output_tokens=tokens, chunks=tokens
            )
        )
        t += 0.01
    return out


def test_under_the_bound_the_level_is_exactly_what_it_was():
    recs = _run(50, 40, seed=1)
    exact = summarize([x for r in recs for x in r.itl], 1000)
    before = aggregate("concurrency", 4, recs)
    budget = ItlBudget(exact=50 * 39)
    for r in recs:
        budget.settle(r)
    assert budget.thinned == 0 and all(r.itl_n is None for r in recs)
    after = aggregate("concurrency", 4, recs)
    assert after == before and after.itl_ms == exact  # the stored level, digit for digit


def test_past_the_bound_records_keep_a_sample_and_the_mean_stays_exact():
    recs = _run(200, 300, seed=2)
    full = [list(r.itl) for r in recs]
    budget = ItlBudget(exact=10_000, per_request=16, seed=0)
    for r in recs:
        budget.settle(r)
    kept = sum(len(r.itl) for r in recs)
    assert budget.kept <= 10_000 and budget.thinned == 200 - 10_000 // 299
    assert kept <= 10_000 + 16 * budget.thinned  # bounded, whatever the run's length
    got = itl_summary(recs)
    exact = summarize([x for g in full for x in g], 1000)
    assert got.mean == pytest.approx(exact.mean, rel=1e-12)
    # a thinned record's chunk times keep its span: first token to the end of its last gap
    r = next(r for r in recs if r.itl_n is not None)
    times = r.chunk_times()
    assert len(times) == r.itl_n + 1 and times[0] == r.start + r.ttft
    assert times[-1] == pytest.approx(r.start + r.ttft + r.itl_sum)


@pytest.mark.slow
def test_the_percentile_error_past_the_bound_by_simulation():
    """40 simulated runs of 300 requests x 120 chunks (a mixture: every 7th request 3x slower), thinned to 16
    gaps per request past 3,000 kept gaps: the estimated p50 / p90 / p99 against the exact ones over all 35,700
    gaps. Measured over 60 such runs (2 cores, busy): 95th percentile of |relative error| 1.3 % (p50), 3.1 %
    (p90), 4.6 % (p99), the mean exact. Stated here: under 2 % / 4.5 % / 6 % in at least 95 % of runs. A real
    run is thinned only past 1,000,000 gaps, so its samples are 100x larger and the errors smaller."""
    errs: dict[str, list[float]] = {"p50": [], "p90": [], "p99": []}
    for seed in range(40):
        recs = _run(300, 120, seed=100 + seed)
        exact = summarize([x for r in recs for x in r.itl], 1000)
        budget = ItlBudget(exact=3_000, per_request=SAMPLE_PER_REQUEST, seed=seed)
        for r in recs:
            budget.settle(r)
        got = itl_summary(recs)
        for q in errs:
            errs[q].append(abs(getattr(got, q) / getattr(exact, q) - 1))
    bounds = {"p50": 0.02, "p90": 0.045, "p99": 0.06}
    for q, e in errs.items():
        share = sum(x <= bounds[q] for x in e) / len(e)
        assert share >= 0.95, (q, share, statistics.quantiles(e, n=20)[-1])
