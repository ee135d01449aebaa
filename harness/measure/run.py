"""measure(): run every load profile of a LoadSpec against one running server; its levels and headline.

It stops at the first level after which the server is gone (`health`) or whose failed requests exceed
`load.max_failed` (`level_problem`), and says why in the result's `stopped`; the caller fails the cell.
A repeated level (`repeats: N`) is checked after each of its runs, and stored once, its runs combined
(harness/measure/level.combine). A sweep profile chooses its levels as it goes (harness/measure/sweep.py):
its rate levels' failures end the sweep as saturation, not the cell; its findings are the result's `sweep`.
What it returns is the result's typed `perf` block (harness/result.Perf).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from harness.measure.level import combine
from harness.measure.loadgen import LoadGenerator
from harness.measure.request import RequestRecord
from harness.measure.sweep import SweepPrompts, run_sweep
from harness.measure.workloads import build as build_requests
from harness.measure.workloads import describe as describe_workload
from harness.result import Level, Perf, Sweep
from harness.result_engine import EnergyMeter
from harness.result_facts import headline
from harness.spec.loadtest import ConcurrencyProfile, LoadProfile, LoadSpec, MaxFailed, SweepProfile, SynchronousProfile


class LevelProbe(Protocol):
    """Something read around each load level (harness/measure/energy.EnergyProbe, acceptance.AcceptanceProbe):
    `begin` before its first send, `end` after its last answer, returning fields of the level to set."""

    def begin(self) -> None: ...
    def end(self, level: Level) -> dict[str, Any]: ...


def level_problem(lv: Level, max_failed: MaxFailed) -> str | None:
    """Why this level's figures are not a data point (too many failed requests), or None."""
    key = "synchronous" if lv.profile == "synchronous" else "other"
    allowed = getattr(max_failed, key)
    if not lv.requests or lv.failed / lv.requests <= allowed:
        return None
    name = {
        "synchronous": "synchronous",
        "concurrency": f"concurrency {lv.level:g}",
        "poisson": f"poisson {lv.level:g} req/s",
        "constant": f"constant {lv.level:g} req/s",
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
    on_level: Callable[[Level], None] | None = None,
    keepalive: bool = True,
    health: Callable[[], str | None] | None = None,
    probes: Sequence[LevelProbe] = (),
    energy: EnergyMeter | None = None,
) -> Perf:
    gen = LoadGenerator(base_url, model, load.output_tokens, load.request_timeout_s, extra, keepalive, stop=health)
    total = load.warmup_requests + sum(prompt_count(p) for p in load.profiles)
    # load.workload's requests (harness/measure/workloads.py); a chat conversation is one of them
    prompts = build_requests(load, tokenizer_src, total)
    it = iter(prompts)

    def take(n: int) -> list:
        return [next(it) for _ in range(n)]

    t0 = time.monotonic()
    warm = take(load.warmup_requests)  # first, as before: the same prompts go to the same levels
    # each level with its prompts taken now, in profile order (the same prompts go to the same levels);
    # every run of a repeated level has its own prompts, so no run finds the previous one's in a prefix cache
    todo: list[tuple[str, float, int, list[list]] | SweepPrompts] = []  # (profile, level, seed, runs' prompts)
    for p in load.profiles:
        if isinstance(p, SynchronousProfile):
            todo.append(("synchronous", 1, 0, [take(p.requests) for _ in range(p.repeats)]))
        elif isinstance(p, ConcurrencyProfile):
            todo += [("concurrency", c, 0, [take(p.requests) for _ in range(p.repeats)]) for c in p.levels]
        elif isinstance(p, SweepProfile):
            todo.append(SweepPrompts.take(p, take))
        else:
            todo.append(("poisson", p.rate, p.seed, [take(p.requests) for _ in range(p.repeats)]))
    stopped = None
    if warm:
        gen.warmup(warm)
        stopped = health() if health else None  # the first requests are where a broken kernel shows
    levels: list[Level] = []
    sweep: Sweep | None = None

    def gone() -> str | None:
        return health() if health else None

    def fatal(res: Level) -> str | None:
        return gone() or level_problem(res, load.max_failed)

    def run_level(
        profile: str, level: float, seed: int, batches: list[list], check: Callable[[Level], str | None]
    ) -> tuple[Level, list[list[RequestRecord]], str | None]:
        """One level, its runs checked as they end: (the level, each run's records, why it stopped)."""
        runs: list[list[RequestRecord]] = []
        why = None
        for p in probes:
            p.begin()
        for batch in batches:
            runs.append(gen.records(profile, batch, level, seed))
            res = combine(profile, level, runs, load.slo, load.steady_trim, load.noisy_cv)
            why = check(res)
            if why:
                break
        found: dict[str, Any] = {}
        for p in probes:  # energy, a draft's acceptance (issue #28): fields of the level
            found.update(p.end(res))
        if found:
            res = res.model_copy(update=found)
        if on_level:
            on_level(res)
        return res, runs, why

    for item in todo:
        if stopped:
            break
        if isinstance(item, SweepPrompts):
            found, sweep, stopped = run_sweep(
                item, run_level, fatal, gone, lambda lv: level_problem(lv, load.max_failed), load.slo
            )
            levels += found
        else:
            res, _, stopped = run_level(*item, fatal)
            levels.append(res)
    return Perf(
        levels=levels,
        wall_s=time.monotonic() - t0,
        stopped=stopped,
        sweep=sweep,
        input_tokens=load.input_tokens,
        output_tokens=load.output_tokens,
        workload=describe_workload(load),
        headline=headline(levels),  # as shown while running; readers derive it from the levels
        **({"energy": energy} if energy is not None else {}),
    )


def prompt_count(p: LoadProfile) -> int:
    """The most requests a profile sends (a sweep's rate levels may send fewer)."""
    if isinstance(p, SweepProfile):
        return p.prompt_count()
    return p.requests * p.repeats * (len(p.levels) if isinstance(p, ConcurrencyProfile) else 1)


def planned_levels(load: LoadSpec, sweep: Sweep | None) -> int:
    """How many levels a complete load test of `load` stores: one per concurrency level or other profile,
    and for a sweep its synchronous and maximum levels plus the rates it ran (`sweep`, the result's
    `perf.sweep`: a sweep that saturated skips the rest, and that is complete)."""
    n = 0
    for p in load.profiles:
        if isinstance(p, SweepProfile):
            n += 2 + len(sweep.rates if sweep is not None else [])
        else:
            n += len(p.levels) if isinstance(p, ConcurrencyProfile) else 1
    return n
