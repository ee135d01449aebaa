"""Repeated load levels: mean, 95 % confidence interval and coefficient of variation of a level's figures
over its runs (`repeats: N` on a profile), and the noise flag.

The interval is Student's t: mean +- t(0.975, n - 1) * s / sqrt(n), with s the sample standard deviation
(n - 1 in the denominator); CV = s / mean. A level is `noisy` when the CV of any figure judged here --
throughput (output tok/s, req/s) or a median latency (TTFT, TPOT, end-to-end) -- exceeds `load.noisy_cv`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from harness.result import Level, Repeats, Spread

# t(0.975, df) for df = 1..30 (scipy.stats.t.ppf, 4 decimals); beyond 30 the Cornish-Fisher expansion below
# is within 1e-4 of it (tests/unit/measure/test_repeats.py)
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959963984540054

# the figures whose spread is reported and judged: a level's own figure, or the median of one of its latencies
JUDGED = ("output_tok_s", "req_s", "ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50")


def t975(df: int) -> float:
    """The 97.5th percentile of Student's t with `df` degrees of freedom (two-sided 95 %)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def spread(values: Sequence[float | None]) -> Spread | None:
    """mean, 95 % CI [low, high] and CV of one figure over the runs; None with fewer than two values."""
    xs = [float(v) for v in values if v is not None]
    if len(xs) < 2:
        return None
    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs)
    half = t975(len(xs) - 1) * sd / math.sqrt(len(xs))
    return Spread(mean=mean, ci95=[mean - half, mean + half], cv=sd / abs(mean) if mean else None, values=xs)


def figure(lv: Level, name: str) -> float | None:
    """One of the JUDGED figures of a level: its own (`output_tok_s`), or a latency's median (`ttft_ms_p50`)."""
    if name.endswith("_p50"):
        return getattr(lv, name.removesuffix("_p50")).p50
    return getattr(lv, name)


def repeats_block(per_run: list[Level], noisy_cv: float) -> tuple[Repeats, bool]:
    """The `repeats` block of a level from each run's own figures (the Level of each run alone), and
    whether the level is noisy."""
    s = {name: spread([figure(lv, name) for lv in per_run]) for name in JUDGED}
    noisy = [n for n in JUDGED if (x := s[n]) is not None and x.cv is not None and x.cv > noisy_cv]
    block = Repeats(
        n=len(per_run),
        output_tok_s=s["output_tok_s"],
        req_s=s["req_s"],
        ttft_ms_p50=s["ttft_ms_p50"],
        tpot_ms_p50=s["tpot_ms_p50"],
        e2e_ms_p50=s["e2e_ms_p50"],
        goodput_req_s=spread([lv.goodput_req_s for lv in per_run]),  # None without an SLO
        noisy_figures=noisy,
    )
    return block, bool(noisy)
