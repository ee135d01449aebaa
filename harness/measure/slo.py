"""Goodput under latency SLOs, as `vllm bench serve --goodput` defines it (vllm/benchmarks/serve.py,
calculate_metrics; the definition is DistServe's, arXiv 2401.09670).

A request is *good* when it completed and each objective the SLO names holds for it: TTFT <= ttft_ms,
TPOT <= tpot_ms (a request of at most one output token has TPOT 0, as vLLM counts it), end-to-end latency
<= e2e_ms. Goodput = good requests / the level's duration (the same duration as its req_s); SLO attainment
= good requests / all requests of the level (a failed request is not good). A level *meets* the SLO when
its attainment is at least `slo.percentile` %.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness.measure.request import RequestRecord

if TYPE_CHECKING:
    from harness.spec.loadtest import SLO


def is_good(rec: RequestRecord, slo: SLO) -> bool:
    if not rec.ok or rec.ttft is None:
        return False
    tpot = rec.tpot or 0.0  # one output token: no decode step to time (vLLM counts it as 0)
    bounds = ((slo.ttft_ms, rec.ttft), (slo.tpot_ms, tpot), (slo.e2e_ms, rec.e2e))
    return all(limit is None or value * 1000.0 <= limit for limit, value in bounds)


def good_count(records: Iterable[RequestRecord], slo: SLO) -> int:
    return sum(is_good(r, slo) for r in records)


def attainment(good: int, requests: int) -> float | None:
    return good / requests if requests else None


def meets(att: float | None, slo: SLO) -> bool | None:
    """Whether an attainment meets the SLO's target share (1e-9: 9 of 10 is 90 % despite float rounding)."""
    return None if att is None else att * 100.0 >= slo.percentile - 1e-9
