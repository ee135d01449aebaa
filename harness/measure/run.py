"""measure(): run every load profile of a LoadSpec against one running server; its levels and headline.

It stops at the first level after which the server is gone (`health`) or whose failed requests exceed
`load.max_failed` (`level_problem`), and says why in the result's `stopped`; the caller fails the cell.
A repeated level (`repeats: N`) is checked after each of its runs, and stored once, its runs combined
(harness/measure/loadgen.combine).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.measure.loadgen import LevelResult, LoadGenerator, combine
from harness.measure.workloads import build as build_requests
from harness.measure.workloads import describe as describe_workload
from harness.spec.models import ConcurrencyProfile, LoadSpec, MaxFailed, SynchronousProfile


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
        p.requests * p.repeats * (len(p.levels) if p.kind == "concurrency" else 1) for p in load.profiles
    )
    # load.workload's requests (harness/measure/workloads.py); a chat conversation is one of them
    prompts = build_requests(load, tokenizer_src, total)
    it = iter(prompts)

    def take(n: int) -> list:
        return [next(it) for _ in range(n)]

    t0 = time.monotonic()
    warm = take(load.warmup_requests)  # first, as before: the same prompts go to the same levels
    # each level with its prompts taken now, in profile order (the same prompts go to the same levels);
    # every run of a repeated level has its own prompts, so no run finds the previous one's in a prefix cache
    todo: list[tuple[str, float, int, list[list]]] = []  # (profile, level, seed, prompts of each run)
    for p in load.profiles:
        if isinstance(p, SynchronousProfile):
            todo.append(("synchronous", 1, 0, [take(p.requests) for _ in range(p.repeats)]))
        elif isinstance(p, ConcurrencyProfile):
            todo += [("concurrency", c, 0, [take(p.requests) for _ in range(p.repeats)]) for c in p.levels]
        else:
            todo.append(("poisson", p.rate, p.seed, [take(p.requests) for _ in range(p.repeats)]))
    stopped = None
    if warm:
        gen.warmup(warm)
        stopped = health() if health else None  # the first requests are where a broken kernel shows
    levels: list[LevelResult] = []
    for profile, level, seed, batches in todo:
        if stopped:
            break
        runs = []
        for batch in batches:
            runs.append(gen.records(profile, batch, level, seed))
            res = combine(profile, level, runs, load.slo, load.steady_trim, load.noisy_cv)
            stopped = (health() if health else None) or level_problem(res, load.max_failed)
            if stopped:
                break
        levels.append(res)
        if on_level:
            on_level(res)
    return {
        "levels": [lv.to_dict() for lv in levels],
        "wall_s": time.monotonic() - t0,
        "input_tokens": load.input_tokens,
        "output_tokens": load.output_tokens,
        "workload": describe_workload(load),
        "headline": headline(levels),
        "stopped": stopped,
    }


def headline(levels: list[LevelResult]) -> dict:
    """The headline figures of these levels, as shown while running: harness/result_facts.headline is the
    one definition (every stored view derives it from the result's levels)."""
    from harness.result import Level
    from harness.result_facts import headline as of_levels

    return of_levels([Level.model_validate(lv.to_dict()) for lv in levels])
