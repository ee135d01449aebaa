"""measure(): run every load profile of a LoadSpec against one running server; flat headline metrics.

It stops at the first level after which the server is gone (`health`) or whose failed requests exceed
`load.max_failed` (`level_problem`), and says why in the result's `stopped`; the caller fails the cell.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.measure.loadgen import LevelResult, LoadGenerator
from harness.measure.prompts import token_prompts
from harness.spec.models import LoadSpec, MaxFailed


def level_problem(lv: LevelResult, max_failed: MaxFailed) -> str | None:
    """Why this level's figures are not a data point (too many failed requests), or None."""
    key = "synchronous" if lv.profile == "synchronous" else "other"
    allowed = getattr(max_failed, key)
    if not lv.requests or lv.failed / lv.requests <= allowed:
        return None
    name = {
        "synchronous": "synchronous",
        "concurrency": f"concurrency {lv.level:g}",
        "poisson": f"poisson {lv.level:g} req/s",
    }.get(lv.profile, f"{lv.profile} {lv.level:g}")
    return (
        f"load level {name}: {lv.failed}/{lv.requests} requests failed, more than the "
        f"{allowed:.0%} allowed (load.max_failed.{key}); first error: {lv.first_error}"
    )


def measure(
    base_url: str,
    model: str,
    load: LoadSpec,
    tokenizer_src: str,
    extra: dict | None = None,
    on_level=None,
    keepalive: bool = True,
    health: Callable[[], str | None] | None = None,
) -> dict:
    gen = LoadGenerator(base_url, model, load.output_tokens, load.request_timeout_s, extra, keepalive, stop=health)
    total = load.warmup_requests + sum(
        p.requests * (len(p.levels) if p.kind == "concurrency" else 1) for p in load.profiles
    )
    prompts = token_prompts(tokenizer_src, load.corpus, total, load.input_tokens, load.seed)
    it = iter(prompts)

    def take(n: int) -> list:
        return [next(it) for _ in range(n)]

    t0 = time.monotonic()
    warm = take(load.warmup_requests)  # first, as before: the same prompts go to the same levels
    runs = []
    for p in load.profiles:
        if p.kind == "synchronous":
            runs += [lambda ps=take(p.requests): gen.synchronous(ps)]
        elif p.kind == "concurrency":
            runs += [lambda ps=take(p.requests), c=c: gen.concurrency(ps, c) for c in p.levels]
        else:
            runs += [lambda ps=take(p.requests), p=p: gen.poisson(ps, p.rate, p.seed)]
    stopped = None
    if warm:
        gen.warmup(warm)
        stopped = health() if health else None  # the first requests are where a broken kernel shows
    levels: list[LevelResult] = []
    for run in runs:
        if stopped:
            break
        res = run()
        levels.append(res)
        if on_level:
            on_level(res)
        stopped = (health() if health else None) or level_problem(res, load.max_failed)
    return {
        "levels": [lv.to_dict() for lv in levels],
        "wall_s": time.monotonic() - t0,
        "input_tokens": load.input_tokens,
        "output_tokens": load.output_tokens,
        "headline": headline(levels),
        "stopped": stopped,
    }


def headline(levels: list[LevelResult]) -> dict:
    """The flat figures `harness status --json` and the advisor use.

    Latency headlines come from the synchronous profile (an idle server: what one user feels; falls back
    to the lowest concurrency); throughput from the highest concurrency level (what the box can do).
    """
    if not levels:
        return {}
    sync = next((lv for lv in levels if lv.profile == "synchronous"), None)
    conc = [lv for lv in levels if lv.profile == "concurrency"]
    lat = sync or min(conc or levels, key=lambda lv: lv.level)
    top = max(conc, key=lambda lv: lv.level) if conc else lat
    return {
        "ttft_ms_p50": lat.ttft_ms["p50"],
        "ttft_ms_p99": lat.ttft_ms["p99"],
        "tpot_ms_p50": lat.tpot_ms["p50"],
        "tpot_ms_p99": lat.tpot_ms["p99"],
        "itl_ms_p50": lat.itl_ms["p50"],
        "itl_ms_p99": lat.itl_ms["p99"],
        "e2e_ms_p50": lat.e2e_ms["p50"],
        "e2e_ms_p99": lat.e2e_ms["p99"],
        "output_tok_s": top.output_tok_s,
        "req_s": top.req_s,
        "top_concurrency": top.level,
        "ttft_ms_p99_at_top": top.ttft_ms["p99"],
        "failed_requests": sum(lv.failed for lv in levels),
    }
