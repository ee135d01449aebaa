"""measure(): run every load profile of a LoadSpec against one running server; flat headline metrics."""

from __future__ import annotations

import time

from harness.measure.loadgen import LevelResult, LoadGenerator
from harness.measure.prompts import token_prompts
from harness.spec.models import LoadSpec


def measure(base_url: str, model: str, load: LoadSpec, tokenizer_src: str, extra: dict | None = None,
            on_level=None, keepalive: bool = True) -> dict:  # noqa: ANN001
    gen = LoadGenerator(base_url, model, load.output_tokens, load.request_timeout_s, extra, keepalive)
    total = load.warmup_requests + sum(
        p.requests * (len(p.levels) if p.kind == "concurrency" else 1) for p in load.profiles)
    prompts = token_prompts(tokenizer_src, load.corpus, total, load.input_tokens, load.seed)
    it = iter(prompts)

    def take(n: int) -> list:
        return [next(it) for _ in range(n)]

    t0 = time.monotonic()
    if load.warmup_requests:
        gen.warmup(take(load.warmup_requests))
    levels: list[LevelResult] = []
    for p in load.profiles:
        if p.kind == "synchronous":
            runs = [lambda ps=take(p.requests): gen.synchronous(ps)]
        elif p.kind == "concurrency":
            runs = [lambda ps=take(p.requests), c=c: gen.concurrency(ps, c) for c in p.levels]
        else:
            runs = [lambda ps=take(p.requests), p=p: gen.poisson(ps, p.rate, p.seed)]
        for run in runs:
            res = run()
            levels.append(res)
            if on_level:
                on_level(res)
    return {"levels": [lv.to_dict() for lv in levels], "wall_s": time.monotonic() - t0,
            "input_tokens": load.input_tokens, "output_tokens": load.output_tokens,
            "headline": headline(levels)}


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
        "ttft_ms_p50": lat.ttft_ms["p50"], "ttft_ms_p99": lat.ttft_ms["p99"],
        "tpot_ms_p50": lat.tpot_ms["p50"], "tpot_ms_p99": lat.tpot_ms["p99"],
        "itl_ms_p50": lat.itl_ms["p50"], "itl_ms_p99": lat.itl_ms["p99"],
        "e2e_ms_p50": lat.e2e_ms["p50"], "e2e_ms_p99": lat.e2e_ms["p99"],
        "output_tok_s": top.output_tok_s, "req_s": top.req_s, "top_concurrency": top.level,
        "ttft_ms_p99_at_top": top.ttft_ms["p99"],
        "failed_requests": sum(lv.failed for lv in levels),
    }
