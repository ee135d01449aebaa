"""The facts derived from a CellResult (harness/result.py), each defined once here and read by every view:
the DuckDB rows (harness/store/rows.py), `harness status`, the runner's resume, the dashboard and the
advisor (through the rows).

- `headline(levels)`: the flat load-test figures (latency from the synchronous profile, throughput from
  the highest concurrency level), over each level's steady window where it holds enough requests
  (`level_window`), and `headline_window` saying which. harness/measure/run.py calls it while running.
- `level_window(level)`: whether a level's steady-window figures stand for it (the one rule the headline
  and the DuckDB `curves` view follow).
- `user_tok_s(tpot_ms_p50)`: tokens/s one user sees (per-user, next to the level's per-system output_tok_s).
- `figures(result)`: every flat figure of a result (headline, memory, size, shift, paired drop, a
  student's training), named by `FIGURES`, which is also the list of the `cells` table's figure columns.
- `cell_status(...)`: what a cell reads as for a host: done | failed (its result), else infeasible |
  planned (its plan), with the reason.
- `primary_metric(task)`, `primary_scores(result)`: a task's headline accuracy.

Pure functions, no heavy imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

from harness.result import CellResult, Level
from harness.spec.metrics import PRIMARY

Figure = float | int | str | bool | None

# name -> type of every headline figure, in the order rows and `status --json` show them
HEADLINE: dict[str, type] = {
    "ttft_ms_p50": float,
    "ttft_ms_p99": float,
    "tpot_ms_p50": float,
    "tpot_ms_p99": float,
    "itl_ms_p50": float,
    "itl_ms_p99": float,
    "e2e_ms_p50": float,
    "e2e_ms_p99": float,
    "output_tok_s": float,
    "req_s": float,
    "top_concurrency": float,
    "ttft_ms_p99_at_top": float,
    "failed_requests": int,
    "headline_window": str,  # which window the figures above are over: steady, level, or each's (see headline)
}
# a `sweep` load profile's findings (harness/result.Sweep), flattened; None without a sweep
SWEEP_FIGURES: dict[str, type] = {
    "sweep_sync_req_s": float,
    "sweep_max_req_s": float,
    "sweep_rates": str,  # the constant rates tried, comma-separated, in order
    "sweep_saturation_req_s": float,
    "sweep_saturation_reason": str,
    "sweep_max_rate_at_slo_req_s": float,
    "sweep_stopped_early": bool,
}
# a level's steady window stands for it only when it holds at least this many requests: with a few
# requests per level (the default matrix sends 3 synchronous, 16 at c16) a 10 % trim at each end leaves
# 0-1 requests wholly inside the window, whose "percentiles" would be one request's latency
MIN_STEADY_REQUESTS = 10
SHIFT_FIGURES = ("kld_mean", "kld_p99", "top1_agreement", "dp_rms", "ppl_ratio")
# name -> type of every flat figure of a result (the `cells` table has one column each, harness/store/schema.py)
FIGURES: dict[str, type] = {
    "teacher_id": str,
    "distill_kind": str,
    "student_key": str,
    "train_tokens": int,
    "train_s": float,
    "train_loss_final": float,
    "heldout_ce": float,
    "ref_gpu_hours": float,
    "ref_usd": float,
    **dict.fromkeys(SHIFT_FIGURES, float),
    "paired_drop": float,
    "paired_drop_ci_lo": float,
    "paired_drop_ci_hi": float,
    "compress_s": float,
    **HEADLINE,
    **SWEEP_FIGURES,
    "peak_mem_gib": float,
    "gpu_peak_gib": float,
    "size_gib": float,
    "bits_per_weight": float,
    "startup_s": float,
}


def level_window(lv: Level) -> tuple[bool, str]:
    """(use the steady window, why): a level's steady-window figures (ramp-up and drain left out,
    harness/measure/steady.py) stand for it when the window holds MIN_STEADY_REQUESTS requests wholly
    inside it (the latency sample) and as many completions (the rates' count); else the whole level does."""
    st = lv.steady
    if st is None:
        return False, "whole level (no steady window measured)"
    if min(st.requests, st.completed) < MIN_STEADY_REQUESTS:
        return False, (
            f"whole level (its steady window held {min(st.requests, st.completed)} requests, "
            f"fewer than {MIN_STEADY_REQUESTS})"
        )
    return True, f"steady window ({st.requests} requests, {st.trim or 0:.0%} trimmed at each end)"


def user_tok_s(tpot_ms_p50: float | None) -> float | None:
    """Output tokens/s one user sees while their answer streams: 1000 / TPOT p50 (the median request's time
    per output token after the first, as `vllm bench serve` defines TPOT): the per-user axis of the
    latency-throughput curves in NVIDIA's NIM benchmarking guide (docs.nvidia.com/nim/benchmarking/llm,
    "Metrics"; tools compute it differently, so this is our definition, not a copy). TTFT is not in it: the
    latency axis shows it."""
    return 1000.0 / tpot_ms_p50 if tpot_ms_p50 else None


def headline(levels: Sequence[Level]) -> dict[str, Figure]:
    """The headline figures of a load test ({} when no level was measured).

    Latency comes from the synchronous profile (an idle server: what one user feels; else the lowest
    concurrency); throughput from the highest concurrency level (what the box can do). Each level's figures
    are over its steady window where it holds enough requests (`level_window`), else over the whole level;
    `headline_window` says which: "steady", "level", or "latency: …; throughput: …" when they differ."""
    if not levels:
        return {}
    sync = next((lv for lv in levels if lv.profile == "synchronous"), None)
    conc = [lv for lv in levels if lv.profile == "concurrency"]
    lat = sync or min(conc or levels, key=lambda lv: lv.level)
    top = max(conc, key=lambda lv: lv.level) if conc else lat
    lat_steady, _ = level_window(lat)
    top_steady, _ = level_window(top)
    lw = lat.steady if lat_steady and lat.steady else lat
    tw = top.steady if top_steady and top.steady else top
    words = {True: "steady", False: "level"}
    window = (
        words[lat_steady]
        if lat_steady == top_steady
        else f"latency: {words[lat_steady]}; throughput: {words[top_steady]}"
    )
    return {
        "ttft_ms_p50": lw.ttft_ms.p50,
        "ttft_ms_p99": lw.ttft_ms.p99,
        "tpot_ms_p50": lw.tpot_ms.p50,
        "tpot_ms_p99": lw.tpot_ms.p99,
        "itl_ms_p50": lw.itl_ms.p50,
        "itl_ms_p99": lw.itl_ms.p99,
        "e2e_ms_p50": lw.e2e_ms.p50,
        "e2e_ms_p99": lw.e2e_ms.p99,
        "output_tok_s": tw.output_tok_s,
        "req_s": tw.req_s,
        "top_concurrency": top.level,
        "ttft_ms_p99_at_top": tw.ttft_ms.p99,
        "failed_requests": sum(lv.failed for lv in levels),
        "headline_window": window,
    }


def sweep_figures(result: CellResult) -> dict[str, Figure]:
    """The result's sweep findings, keyed as SWEEP_FIGURES (all None without a sweep)."""
    sw = result.perf.sweep if result.perf else None
    if sw is None:
        return dict.fromkeys(SWEEP_FIGURES)
    return {
        "sweep_sync_req_s": sw.sync_req_s,
        "sweep_max_req_s": sw.max_req_s,
        "sweep_rates": ",".join(f"{r:g}" for r in sw.rates) or None,
        "sweep_saturation_req_s": sw.saturation_req_s,
        "sweep_saturation_reason": sw.saturation_reason,
        "sweep_max_rate_at_slo_req_s": sw.max_rate_at_slo_req_s,
        "sweep_stopped_early": sw.stopped_early,
    }


def primary_metric(task: str) -> str | None:
    """The metric that is `task`'s headline accuracy (None: the task has none, e.g. a perplexity task)."""
    if task in PRIMARY:
        return PRIMARY[task]
    from harness.spec.context_lengths import split_length_task

    base, length = split_length_task(task)  # a long-context task's length (`dq_niah@4096`): its task's metric
    if length is not None and base in PRIMARY:
        return PRIMARY[base]
    from harness.evaluate.catalog import primary_metric as catalog_primary

    return catalog_primary(task)


def primary_scores(result: CellResult) -> dict[str, float]:
    """task -> value of its primary metric, for the tasks that have one and were scored."""
    out: dict[str, float] = {}
    for task, t in (result.quality.tasks if result.quality else {}).items():
        m = primary_metric(task)
        v = t.metrics[m].value if m in t.metrics else None
        if m is not None and v is not None:
            out[task] = v
    return out


def quality_values(result: CellResult | None) -> dict[str, dict[str, float | None]]:
    """task -> metric -> value: the per-task scores a status row shows."""
    if result is None or result.quality is None:
        return {}
    return {task: {m: v.value for m, v in t.metrics.items()} for task, t in result.quality.tasks.items()}


def figures(result: CellResult | None) -> dict[str, Figure]:
    """Every flat figure of a result, keyed as FIGURES ({} for no result)."""
    if result is None:
        return {}
    art = result.artefact
    shift = result.shift or {}
    sm = shift.get("metrics") or {}
    agg = (shift.get("flips") or {}).get("aggregate") or {}
    ci = agg.get("drop_ci95") or [None, None]
    dist = result.distill or {}
    rec = dist.get("record") or {}
    curve = rec.get("loss_curve") or []
    ref_cost = (dist.get("cost") or {}).get("reference") or {}
    head = headline(result.perf.levels) if result.perf else {}
    mem = result.memory
    size = art.size_bytes if art else None
    out: dict[str, Figure] = {
        "teacher_id": dist.get("teacher_id"),
        "distill_kind": dist.get("kind"),
        "student_key": dist.get("student_key"),
        "train_tokens": rec.get("tokens_seen"),
        "train_s": rec.get("train_s"),
        "train_loss_final": curve[-1]["loss"] if curve else None,
        "heldout_ce": (rec.get("heldout_after") or {}).get("ce"),
        "ref_gpu_hours": ref_cost.get("gpu_hours"),
        "ref_usd": ref_cost.get("usd"),
        **{k: sm.get(k) for k in SHIFT_FIGURES},
        "paired_drop": agg.get("drop_abs"),
        "paired_drop_ci_lo": ci[0],
        "paired_drop_ci_hi": ci[1],
        "compress_s": (art.record if art else {}).get("wall_s"),
        **{k: head.get(k) for k in HEADLINE},
        **sweep_figures(result),
        "peak_mem_gib": mem.peak_gib if mem else None,
        "gpu_peak_gib": mem.gpu_peak_gib if mem else None,
        "size_gib": size / 2**30 if size else None,
        "bits_per_weight": art.bits_per_weight if art else None,
        "startup_s": result.serve.startup_s if result.serve else None,
    }
    assert list(out) == list(FIGURES), "figures() and FIGURES name the same figures, in order"
    return out


def flat_metrics(result: CellResult | None) -> dict[str, Any]:
    """The `metrics` object of `harness status --json`: every figure and the per-task scores."""
    if result is None:
        return {}
    return {**figures(result), "quality": quality_values(result)}


DisplayStatus = Literal["done", "failed", "infeasible", "planned"]


class CellStatus(NamedTuple):
    status: DisplayStatus
    reason: str | None


def cell_status(
    plan_status: str,
    plan_reason: str | None,
    result: CellResult | None,
    done_elsewhere: Mapping[str, str] | None = None,
) -> CellStatus:
    """What a cell reads as for one host: its result there decides (done | failed, with the result's
    reason); without one, its plan does (infeasible with the plan's reason, else planned).

    A result wins over an infeasible plan because it is what happened on this host (the support table
    may have changed since); the reason then says that the plan now disagrees. `done_elsewhere` (host id
    -> label of hosts with a done result) explains a planned cell done only on other hosts."""
    if result is not None:
        reason = result.reason
        if plan_status == "infeasible" and result.done:
            reason = f"the current plan marks this cell infeasible here ({plan_reason}); this result predates that"
        return CellStatus(result.status, reason)
    if plan_status == "infeasible":
        return CellStatus("infeasible", plan_reason)
    if done_elsewhere:
        where = "; ".join(f"{label} [{h}]" for h, label in done_elsewhere.items())
        return CellStatus(
            "planned", f"done on {where}, not on this host: `harness run` runs it here (results are per host)"
        )
    return CellStatus("planned", None)
