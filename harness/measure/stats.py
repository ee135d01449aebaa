"""Latency statistics. Percentiles use linear interpolation between closest ranks (numpy's default),
so figures agree with vLLM's own benchmark, which uses numpy.percentile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.result import Percentiles


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def summarize(values: Sequence[float], scale: float = 1.0) -> Percentiles:
    """mean / p50 / p90 / p99 of `values` times `scale` (e.g. 1000 for s -> ms); all None without values."""
    if not values:
        return Percentiles()
    v = [x * scale for x in values]
    return Percentiles(mean=sum(v) / len(v), p50=percentile(v, 50), p90=percentile(v, 90), p99=percentile(v, 99))
