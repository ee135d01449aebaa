"""A load level's figures from its requests' records: `combine` (the runs of one level, one or `repeats`
of them) and `aggregate` (one run) make the stored harness/result.Level directly, every figure computed
once here from the RequestRecords (harness/measure/request.py).

Definitions follow vLLM's serving benchmark so the two can be compared (bench/vs_vllm_bench.py):
throughput = total output tokens / (last completion - first request); percentiles are numpy's
(harness/measure/stats.py). Besides the whole level, every level reports goodput under `load.slo`
(harness/measure/slo.py), its steady window (harness/measure/steady.py) and, when repeated, the spread
over its runs (harness/measure/repeats.py).
"""

from __future__ import annotations

from harness.measure import steady
from harness.measure.itl_budget import itl_summary
from harness.measure.repeats import repeats_block
from harness.measure.request import RequestRecord
from harness.measure.slo import attainment, good_count, meets
from harness.measure.stats import summarize
from harness.result import Level, Turn
from harness.spec.loadtest import SLO


def span(records: list[RequestRecord]) -> float:
    """A run's duration: its first request sent to its last answer (abandoned requests were never timed)."""
    sent = [r for r in records if not r.abandoned]
    return max(r.end for r in sent) - min(r.start for r in sent) if sent else 0.0


def by_turn(ok: list[RequestRecord]) -> list[Turn] | None:
    """Chat levels: each turn's TTFT and mean prompt length (a later turn carries the history before it);
    None outside a chat workload."""
    turns = sorted({r.turn for r in ok if r.turn})
    if not turns:
        return None
    out = []
    for t in turns:
        recs = [r for r in ok if r.turn == t]
        out.append(
            Turn(
                turn=t,
                requests=len(recs),
                prompt_tokens=sum(r.prompt_tokens for r in recs) / len(recs),
                ttft_ms=summarize([r.ttft for r in recs if r.ttft is not None], 1000),
            )
        )
    return out


def aggregate(
    profile: str,
    level: float,
    records: list[RequestRecord],
    slo: SLO | None = None,
    steady_trim: float = 0.1,
) -> Level:
    """One run's records as a level."""
    return combine(profile, level, [records], slo, steady_trim)


def combine(
    profile: str,
    level: float,
    runs: list[list[RequestRecord]],
    slo: SLO | None = None,
    steady_trim: float = 0.1,
    noisy_cv: float = 0.1,
) -> Level:
    """The runs of one level (one, or `repeats` of them) as its result. With several runs the level's own
    figures pool them: counts and durations summed, percentiles over every run's requests; `repeats`
    gives the spread of each run's figures."""
    records = [r for run in runs for r in run]
    ok = [r for r in records if r.ok]
    duration = sum(span(run) for run in runs)
    failed = sorted((r for r in records if not r.ok), key=lambda r: (r.abandoned, r.start))
    good = good_count(ok, slo) if slo else 0
    att = attainment(good, len(records)) if slo else None
    lag = [x for x in (r.schedule_lag for r in records) if x is not None]
    per_run, noisy = None, False
    if len(runs) > 1:
        per_run, noisy = repeats_block([combine(profile, level, [run], slo, steady_trim) for run in runs], noisy_cv)
    out_tok = sum(r.output_tokens for r in ok)
    in_tok = sum(r.prompt_tokens for r in ok)
    return Level(
        profile=profile,
        level=level,
        requests=len(records),
        completed=len(ok),
        failed=len(records) - len(ok),
        duration_s=duration,
        req_s=len(ok) / duration if duration > 0 else 0.0,
        output_tok_s=out_tok / duration if duration > 0 else 0.0,
        input_tok_s=in_tok / duration if duration > 0 else 0.0,
        ttft_ms=summarize([r.ttft for r in ok if r.ttft is not None], 1000),
        tpot_ms=summarize([x for x in (r.tpot for r in ok) if x is not None], 1000),
        itl_ms=itl_summary(ok),  # exact under the run's bound (harness/measure/itl_budget.py)
        e2e_ms=summarize([r.e2e for r in ok], 1000),
        errors=sorted({r.error for r in records if r.error})[:5],
        goodput_req_s=(good / duration if duration > 0 else 0.0) if slo else None,
        slo_attainment=att,
        slo_met=meets(att, slo) if slo else None,
        steady=steady.figures([steady.part(run, steady_trim, slo) for run in runs], steady_trim, slo),
        repeats=per_run,
        noisy=noisy,
        schedule_lag_ms=summarize(lag, 1000) if lag else None,
        retried=sum(r.retried for r in records),
        abandoned=sum(r.abandoned for r in records),
        first_error=failed[0].error if failed else None,
        turns=by_turn(ok),
        cached_tokens=sum(r.cached_tokens or 0 for r in ok) if any(r.cached_tokens is not None for r in ok) else None,
    )
