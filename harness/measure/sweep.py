"""The sweep load profile (`{kind: sweep}`): find where a server saturates and the highest rate that meets
`load.slo`, in bounded time. Owns the order of a sweep's levels, the spacing of its rates and the
saturation judgement; harness/measure/run.py runs each level, and its findings are a harness/result.Sweep.

The order is GuideLLM's SweepProfile (guidellm/benchmark/profiles.py, `next_strategy`): a synchronous level
(one request at a time: the baseline rate), a throughput level (every request at once; GuideLLM's
ThroughputStrategy, here a concurrency level at `max_concurrency`: the maximum rate), then open-loop levels
at `np.linspace(synchronous_rate, throughput_rate, sweep_size - 1)[1:]` -- with `rates: N` (GuideLLM's
sweep_size = N + 2), N rates evenly spaced above the baseline up to the maximum itself. Both measured rates
are GuideLLM's `request_throughput.successful.mean`: completed requests / the level's duration (`req_s`).
Arrivals are constant (AsyncConstantStrategy, every gap 1 / rate) or Poisson, on absolute send times.
vLLM 0.32's peer, `vllm bench sweep serve_workload` (vllm/benchmarks/sweep/serve_workload.py), measures the
same two ends (max_concurrency 1 and the dataset's size) but runs only the rates strictly between them,
`np.linspace(serial, batch, iters)[1:-1]` rounded to whole requests/s, and judges no saturation.

Saturation, judged on each rate level (GuideLLM stops escalating on failures only; the two queueing tests
are this project's, as issue #17 asks):
  * achieved rate: completions per second, (completed - 1) / (last completion - first completion), below
    `min_achieved` (0.9) of the target. While the server keeps up, answers leave as fast as requests
    arrive; once it cannot, they leave at its capacity. (The level's `req_s` counts the last request's
    whole latency in its span and reads low on a short level that kept up.)
  * queues growing: the median TTFT of the last third of the level's requests (by send time) at least
    `ttft_growth` (2) times that of its first third. The first third's median is floored at the synchronous
    level's TTFT p50, so a few milliseconds of jitter on a near-idle server are not "doubling".
  * failures: more failed requests than `load.max_failed.other` allows (time-outs under overload). Here
    they end the sweep, not the cell; a server that died still fails the cell (the health check).
Rates are tried in increasing order, so once one saturates the higher ones are skipped (`stopped_early`).
With `repeats`, a level is saturated when any of its runs is (the lowest achieved rate, the highest growth).
The highest rate at the SLO is the highest target rate whose level met `load.slo` among the baseline and the
rates that did not saturate (a saturated level may still pass the SLO over a short level; it is not a rate
the server sustains).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.measure.request import RequestRecord
from harness.result import Level, Sweep

if TYPE_CHECKING:
    from harness.spec.loadtest import SLO, SweepProfile

# (profile, level, seed, prompts of each run, check after each run) -> (the level, its runs' records, why it
# stopped: the check's answer); harness/measure/run.py's level runner
RunLevel = Callable[
    [str, float, int, list[list], Callable[[Level], str | None]],
    tuple[Level, list[list[RequestRecord]], str | None],
]


def spaced_rates(sync_req_s: float, max_req_s: float, n: int) -> list[float]:
    """GuideLLM's rates: `np.linspace(sync, max, n + 1)[1:]` -- n rates evenly spaced above the synchronous
    rate, the last one the maximum. A maximum below the baseline (a server that does not batch, measured
    with noise) swaps the two, so rates still increase."""
    lo, hi = sorted((sync_req_s, max_req_s))
    return [lo + (hi - lo) * k / n for k in range(1, n + 1)]


def level_requests(rate: float, requests: int, max_level_s: float) -> int:
    """How many requests a rate level sends: `requests`, or fewer when their arrivals (first at once, one
    every 1 / rate s on average) would last more than `max_level_s` -- at least 2, to time one gap."""
    return max(2, min(requests, 1 + math.floor(rate * max_level_s)))


def completion_rate(records: list[RequestRecord]) -> float | None:
    """Completions per second between the first completion and the last; None with fewer than two."""
    ends = sorted(r.end for r in records if r.ok)
    if len(ends) < 2 or ends[-1] <= ends[0]:
        return None
    return (len(ends) - 1) / (ends[-1] - ends[0])


def ttft_thirds(records: list[RequestRecord]) -> tuple[float, float] | None:
    """Median TTFT (s) of the first and of the last third of the completed requests, by send time; None
    with fewer than six (thirds of two)."""
    ttfts = [r.ttft for r in sorted(records, key=lambda r: r.start) if r.ok and r.ttft is not None]
    if len(ttfts) < 6:
        return None
    k = len(ttfts) // 3
    return statistics.median(ttfts[:k]), statistics.median(ttfts[-k:])


@dataclass
class Judgement:
    """One rate level's saturation test."""

    achieved_req_s: float | None
    ttft_growth: float | None
    reason: str | None  # None: not saturated

    @property
    def saturated(self) -> bool:
        return self.reason is not None


def judge(
    runs: list[list[RequestRecord]],
    target: float,
    spec: SweepProfile,
    sync_ttft_s: float | None,
    failures: str | None = None,
) -> Judgement:
    """Whether a rate level saturated the server, from its runs' records (see the module docstring);
    `failures` is the level's failed-request problem (harness/measure/run.level_problem), if any."""
    rates = [x for x in (completion_rate(run) for run in runs) if x is not None]
    achieved = min(rates) if rates else None
    growth, worst = None, None
    for run in runs:
        thirds = ttft_thirds(run)
        if thirds is None:
            continue
        first, last = thirds
        g = last / max(first, sync_ttft_s or 0.0, 1e-6)
        if growth is None or g > growth:
            growth, worst = g, (first, last)
    reason = None
    if failures:
        reason = failures
    elif achieved is None:
        reason = f"fewer than two requests completed at {target:.3g} req/s"
    elif achieved < spec.min_achieved * target:
        reason = (
            f"completed {achieved:.3g} req/s, {achieved / target:.0%} of the {target:.3g} req/s sent "
            f"(below min_achieved {spec.min_achieved:.0%})"
        )
    elif growth is not None and worst is not None and growth >= spec.ttft_growth:
        reason = (
            f"queues growing at {target:.3g} req/s: median TTFT of the last third {worst[1] * 1000:.0f} ms, "
            f"{growth:.1f}x the first third's {worst[0] * 1000:.0f} ms (ttft_growth {spec.ttft_growth:g}x)"
        )
    return Judgement(achieved, growth, reason)


@dataclass
class SweepPrompts:
    """A sweep's prompts, taken up front in profile order (the same prompts go to the same levels): per
    level, per run. Every rate level has `requests` prompts; it may use only the first ones."""

    spec: SweepProfile
    sync: list[list]
    top: list[list]
    rates: list[list[list]]

    @classmethod
    def take(cls, spec: SweepProfile, take: Callable[[int], list]) -> SweepPrompts:
        def level() -> list[list]:
            return [take(spec.requests) for _ in range(spec.repeats)]

        return cls(spec, level(), level(), [level() for _ in range(spec.rates)])


def _ttft_p50_s(lv: Level) -> float | None:
    p50 = lv.ttft_ms.p50
    return p50 / 1000.0 if p50 is not None else None


def run_sweep(
    prompts: SweepPrompts,
    run_level: RunLevel,
    fatal: Callable[[Level], str | None],
    gone: Callable[[], str | None],
    failures: Callable[[Level], str | None],
    slo: SLO | None,
) -> tuple[list[Level], Sweep, str | None]:
    """Run one sweep: its levels, its findings, and why the load test must stop (the server is gone, or
    the synchronous or maximum level failed as any such level fails a cell), or None.

    `fatal(level)` is the check of a fixed level (health, then too many failures); `gone()` the health check
    alone, for rate levels, whose failures are a saturation reason (`failures(level)`)."""
    spec = prompts.spec
    levels: list[Level] = []
    found = Sweep(arrival=spec.arrival)

    sync, _, stop = run_level("synchronous", 1, 0, prompts.sync, fatal)
    levels.append(sync)
    found.sync_req_s = sync.req_s
    if stop:
        return levels, found, stop
    top, _, stop = run_level("concurrency", spec.max_concurrency, 0, prompts.top, fatal)
    levels.append(top)
    found.max_req_s = top.req_s
    if stop:
        return levels, found, stop
    if sync.req_s <= 0 and top.req_s <= 0:  # GuideLLM aborts here too ("Were there any successful requests?")
        return levels, found, "sweep: no request completed at the synchronous or the maximum level"

    planned = spaced_rates(sync.req_s, top.req_s, spec.rates)
    found.planned_rates = planned
    sync_ttft = _ttft_p50_s(sync)
    candidates_slo = [sync.req_s] if slo and sync.slo_met else []
    sustained = [sync.req_s]
    profile = spec.arrival
    for k, rate in enumerate(planned):
        n = level_requests(rate, spec.requests, spec.max_level_s)
        batches = [run[:n] for run in prompts.rates[k]]
        lv, runs, stop = run_level(profile, rate, spec.seed + k, batches, lambda _lv: gone())
        levels.append(lv)
        if stop:
            return levels, found, stop
        verdict = judge(runs, rate, spec, sync_ttft, failures(lv))
        found.rates.append(rate)
        found.achieved_req_s.append(verdict.achieved_req_s)
        found.ttft_growth.append(verdict.ttft_growth)
        if verdict.saturated:
            found.saturation_req_s, found.saturation_reason = rate, verdict.reason
            found.stopped_early = k < len(planned) - 1
            break
        sustained.append(rate)
        if slo and lv.slo_met:
            candidates_slo.append(rate)
    found.max_sustained_req_s = max(sustained)
    found.max_rate_at_slo_req_s = max(candidates_slo) if candidates_slo else None
    return levels, found, None
