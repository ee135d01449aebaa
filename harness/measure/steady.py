"""The steady window of a load level: its figures with ramp-up and drain left out.

The window is GuideLLM's warmup/cooldown by percent of duration (guidellm/benchmark/schemas/base.py,
TransientPhaseConfig with `percent` and mode `duration`), applied after the level ran, when its span is
known: the level runs from its first request sent (t0) to its last answer (t1), and the window is
[t0 + trim * (t1 - t0), t1 - trim * (t1 - t0)] (`load.steady_trim`, 0.1 by default; GuideLLM has no
default, it excludes nothing unless asked).

What falls in the window:
  * rates count events inside it, as GuideLLM's rate distributions do (lo < t <= hi: an event on a
    boundary counts in one window only): req_s = requests that completed in the window / its length;
    output_tok_s = tokens whose chunk arrived in it / its length (each request's chunk times are start +
    TTFT + the running sum of its ITLs); goodput_req_s = good completions in it / its length, and
    slo_attainment = good completions / requests that ended (completed or failed) in it;
  * latency percentiles are over the requests that started and finished inside it (GuideLLM takes every
    request that overlaps its window; overlap keeps the first wave of a closed-loop level, whose prefills
    queue behind each other, and the last, which decodes in a shrinking batch -- the two things a steady
    window is for leaving out).
With repeats, each run has its own window; the figures pool them (counts and window lengths summed,
percentiles over the requests of every window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.measure.itl_budget import itl_summary
from harness.measure.request import RequestRecord
from harness.measure.slo import attainment, good_count
from harness.measure.stats import summarize
from harness.result import Steady

if TYPE_CHECKING:
    from harness.spec.loadtest import SLO


def window(records: list[RequestRecord], trim: float) -> tuple[float, float, float] | None:
    """(t0, window start, window end) of one run's records; None when nothing was sent or it took no time."""
    sent = [r for r in records if not r.abandoned]
    if not sent:
        return None
    t0, t1 = min(r.start for r in sent), max(r.end for r in sent)
    span = t1 - t0
    if span <= 0:
        return None
    return t0, t0 + trim * span, t1 - trim * span


def tokens_between(rec: RequestRecord, lo: float, hi: float) -> float:
    """Output tokens of `rec` that arrived in (lo, hi]; a chunk carries output_tokens / chunks of them."""
    times = rec.chunk_times()
    if not times or not rec.ok:
        return 0.0
    per_chunk = rec.output_tokens / len(times)
    return per_chunk * sum(lo < t <= hi for t in times)


@dataclass
class Part:
    """One run's share of the steady figures."""

    start_s: float = 0.0  # the window, relative to the run's first request sent
    end_s: float = 0.0
    duration_s: float = 0.0
    ended: int = 0  # requests that ended (completed or failed) in the window
    completed: int = 0  # of those, completed
    good: int = 0  # of those, good under the SLO
    output_tokens: float = 0.0  # tokens that arrived in the window
    input_tokens: int = 0  # prompt tokens of the requests whose first token arrived in the window
    inside: list[RequestRecord] = field(default_factory=list)  # completed requests wholly in the window


def part(records: list[RequestRecord], trim: float, slo: SLO | None) -> Part:
    w = window(records, trim)
    if w is None:
        return Part()
    t0, lo, hi = w
    sent = [r for r in records if not r.abandoned]
    ended = [r for r in sent if lo < r.end <= hi]
    done = [r for r in ended if r.ok]
    return Part(
        start_s=lo - t0,
        end_s=hi - t0,
        duration_s=hi - lo,
        ended=len(ended),
        completed=len(done),
        good=good_count(done, slo) if slo else 0,
        output_tokens=sum(tokens_between(r, lo, hi) for r in sent if r.ok),
        input_tokens=sum(r.prompt_tokens for r in sent if r.ok and r.ttft is not None and lo < r.start + r.ttft <= hi),
        inside=[r for r in done if r.start >= lo],
    )


def figures(parts: list[Part], trim: float, slo: SLO | None) -> Steady:
    """The steady block of a level from its runs' parts."""
    dur = sum(p.duration_s for p in parts)
    inside = [r for p in parts for r in p.inside]
    ended, good = sum(p.ended for p in parts), sum(p.good for p in parts)

    def rate(x: float) -> float | None:
        return x / dur if dur > 0 else None

    return Steady(
        trim=trim,
        windows=[[p.start_s, p.end_s] for p in parts],
        duration_s=dur,
        requests=len(inside),
        completed=sum(p.completed for p in parts),
        req_s=rate(sum(p.completed for p in parts)),
        output_tok_s=rate(sum(p.output_tokens for p in parts)),
        input_tok_s=rate(sum(p.input_tokens for p in parts)),
        ttft_ms=summarize([r.ttft for r in inside if r.ttft is not None], 1000),
        tpot_ms=summarize([x for x in (r.tpot for r in inside) if x is not None], 1000),
        itl_ms=itl_summary(inside),
        e2e_ms=summarize([r.e2e for r in inside], 1000),
        goodput_req_s=rate(good) if slo else None,
        slo_attainment=attainment(good, ended) if slo else None,
    )
