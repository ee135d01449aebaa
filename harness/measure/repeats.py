"""Repeated load levels: mean, 95 % confidence interval and coefficient of variation of a level's figures
over its runs (`repeats: N` on a profile), and the noise flag.

The interval is Student's t: mean +- t(0.975, n - 1) * s / sqrt(n), with s the sample standard deviation
(n - 1 in the denominator); CV = s / mean. A level is `noisy` when the CV of any figure judged here --
throughput (output tok/s, req/s) or a median latency (TTFT, TPOT, end-to-end) -- exceeds `load.noisy_cv`.
"""

from __future__ import annotations

import math
import statistics

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


def spread(values: list[float | None]) -> dict | None:
    """mean, 95 % CI [low, high] and CV of one figure over the runs; None with fewer than two values."""
    xs = [float(v) for v in values if v is not None]
    if len(xs) < 2:
        return None
    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs)
    half = t975(len(xs) - 1) * sd / math.sqrt(len(xs))
    return {
        "mean": mean,
        "ci95": [mean - half, mean + half],
        "cv": sd / abs(mean) if mean else None,
        "values": xs,
    }


def repeats_block(per_run: list[dict], noisy_cv: float) -> tuple[dict, bool]:
    """The `repeats` block of a level from each run's own figures (LevelResult.to_dict() of one run), and
    whether the level is noisy."""
    block: dict = {"n": len(per_run)}
    for name in JUDGED:
        if name.endswith("_p50"):
            key = name[: -len("_p50")]
            block[name] = spread([(lv.get(key) or {}).get("p50") for lv in per_run])
        else:
            block[name] = spread([lv.get(name) for lv in per_run])
    if any(lv.get("goodput_req_s") is not None for lv in per_run):
        block["goodput_req_s"] = spread([lv.get("goodput_req_s") for lv in per_run])
    noisy = [n for n in JUDGED if block[n] and block[n]["cv"] is not None and block[n]["cv"] > noisy_cv]
    block["noisy_figures"] = noisy
    return block, bool(noisy)
