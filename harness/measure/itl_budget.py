"""A bound on the inter-token latencies a load run keeps in memory, and their statistics when it is reached.

Every request's record (harness/measure/request.py) keeps the gaps between its streamed chunks: the level's ITL
percentiles, the steady window's (which needs each request's chunk times) and its tokens per second are made
from them. A run of 100,000 requests of 2,000 tokens would keep 2e8 Python floats (~6 GB). So a run keeps
every gap exactly up to EXACT_ITLS of them (a run under that bound computes every figure exactly as before,
from the same lists: the stored result does not change by a digit), and a request that completes past the
bound keeps a uniform sample of SAMPLE_PER_REQUEST of its gaps with their exact count and sum (`settle`).

For such a run: each ITL mean is exact (the counts and sums); the percentiles are weighted percentiles of the
samples, each request's sample weighted by its gaps per sample value (`itl_summary`), an estimate whose error
tests/unit/measure/test_itl_budget.py measures by simulation; a thinned request's chunk times are spread
evenly between its first token and its end (the steady window counts tokens by chunk time). Memory per run is
then at most EXACT_ITLS floats plus SAMPLE_PER_REQUEST per further request, plus the requests in flight.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from harness.measure.request import RequestRecord
from harness.measure.stats import summarize
from harness.result import Percentiles

EXACT_ITLS = 1_000_000  # gaps a run keeps exactly (~32 MB as Python floats): past this, samples
SAMPLE_PER_REQUEST = 16  # gaps a request completed past the bound keeps


class ItlBudget:
    """One load run's bound (harness/measure/loadgen.py settles each record as its request completes)."""

    def __init__(self, exact: int = EXACT_ITLS, per_request: int = SAMPLE_PER_REQUEST, seed: int = 0) -> None:
        self.exact, self.per_request = exact, per_request
        self.kept = 0  # gaps kept exactly so far
        self.thinned = 0  # requests that keep a sample
        self._rng = random.Random(seed)

    def settle(self, rec: RequestRecord) -> None:
        if rec.itl_n is not None:
            return  # settled already (a conversation's records pass once each)
        n = len(rec.itl)
        if self.kept + n <= self.exact:
            self.kept += n
            return
        rec.itl_n, rec.itl_sum = n, sum(rec.itl)
        if n > self.per_request:
            rec.itl = self._rng.sample(rec.itl, self.per_request)
        self.thinned += 1


def itl_summary(records: Sequence[RequestRecord], scale: float = 1000.0) -> Percentiles:
    """mean / p50 / p90 / p99 of the records' inter-token latencies times `scale`: exact (stats.summarize over
    every gap, as before the bound) when no record was thinned, else the mean from the exact counts and sums
    and weighted percentiles of the samples."""
    if all(r.itl_n is None for r in records):
        return summarize([x for r in records for x in r.itl], scale)
    pairs: list[tuple[float, float]] = []
    count, total = 0, 0.0
    for r in records:
        if r.itl_n is None:
            pairs += [(x, 1.0) for x in r.itl]
            count, total = count + len(r.itl), total + sum(r.itl)
        elif r.itl:
            w = r.itl_n / len(r.itl)
            pairs += [(x, w) for x in r.itl]
            count, total = count + r.itl_n, total + r.itl_sum
    if not count or not pairs:
        return Percentiles()
    pairs.sort()
    weight = sum(w for _, w in pairs)

    def at(q: float) -> float:
        target, run = q / 100.0 * weight, 0.0
        for x, w in pairs:
            run += w
            if run >= target:
                return x * scale
        return pairs[-1][0] * scale

    return Percentiles(mean=total / count * scale, p50=at(50), p90=at(90), p99=at(99))
