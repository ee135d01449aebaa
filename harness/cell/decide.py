"""The evaluate step's part of a matrix's `decide:` question (harness/decide/): what the evaluator is handed to
score the cell sequentially (`sequential_for`), and, under `harness run --until-decided`, the gate that skips the
evaluation of a cell whose measured objective cannot beat the current answer (`skip_reason`, `skipped_quality`).

Paths: the cell's item journals are `work/<cell>/<host>/items/` (harness/workspace.CellPaths.measured); its
reference's are the same folder of the reference cell on this host (harness/decide/question.reference_of).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.decide.priority import cannot_beat, objective_value
from harness.decide.question import (
    SequentialSpec,
    item_budget,
    measure_name,
    measure_tasks,
    method_of,
    method_text,
    reference_of,
)
from harness.result import CellResult, Decision, Memory, Quality

if TYPE_CHECKING:
    from harness.cell.context import CellRun

ITEMS = "items"  # the journal folder under a cell's measured folder


def sequential_for(run: CellRun) -> SequentialSpec | None:
    """The cell's sequential evaluation, or None without `decide:`."""
    cell, decide = run.cell, getattr(run.cell, "decide", None)
    if decide is None:
        return None
    ref = reference_of(cell)
    host = run.paths.measured.name
    budget, _ = item_budget(cell.evaluation, decide)
    return SequentialSpec(
        measure=measure_tasks(cell.evaluation, decide),
        measure_name=measure_name(decide),
        max_drop=decide.max_drop,
        relative=decide.drop.relative,
        limit=decide.limit,
        error_rate=decide.error_rate,
        method=decide.method,
        max_items=budget,
        batch_items=min(decide.batch_items, budget),
        seed=decide.seed,
        journal_dir=str(run.paths.measured / ITEMS),
        # the reference's work folder beside this cell's (harness/store/results.ResultStore.work_dir)
        reference_dir=str(run.paths.work.parent / ref / host / ITEMS) if ref else None,
        reference_id=ref,
    )


def skip_reason(run: CellRun) -> str | None:
    """Why the cell's evaluation cannot change `--until-decided`'s answer (its measured objective does not beat
    the current winner's), or None (evaluate it)."""
    bar = getattr(run.cell, "must_beat", None)
    if bar is None or getattr(run.cell, "decide", None) is None:
        return None
    probe = CellResult.model_construct(perf=run.perf, memory=None)
    if bar.objective == "memory":  # the peak sampled so far (the load test's)
        sampler = getattr(run, "memory_sampler", None)
        mem = Memory.model_validate(sampler.block()) if sampler is not None else getattr(run, "memory", None)
        probe = CellResult.model_construct(perf=None, memory=mem)
    value = objective_value(probe, bar.objective)
    if not cannot_beat(value, bar):
        return None
    return (
        f"its measured {bar.objective} {value:.4g} cannot beat the current answer {bar.winner} at {bar.value:.4g}: "
        f"its quality cannot change the recommendation"
    )


def skipped_quality(run: CellRun, reason: str) -> Quality:
    """The quality block of a skipped evaluation: no scores, and a decision that says why."""
    cell, decide = run.cell, run.cell.decide
    assert decide is not None
    return Quality(
        decision=Decision(
            method=method_text(decide.method),
            measure=measure_name(decide),
            tasks=measure_tasks(cell.evaluation, decide),
            max_drop=decide.max_drop,
            relative=decide.drop.relative,
            limit=decide.limit,
            error_rate=decide.error_rate,
            seed=decide.seed,
            batch_items=min(decide.batch_items, item_budget(cell.evaluation, decide)[0]),
            max_items=item_budget(cell.evaluation, decide)[0],
            reference=reference_of(cell),
            verdict=None,
            stop="skipped",
            stop_reason=reason,
        )
    )


def is_skipped(quality: Quality | dict[str, Any] | None) -> bool:
    """Whether a quality block (or its JSON) is a skipped evaluation's."""
    if quality is None:
        return False
    q = quality if isinstance(quality, Quality) else Quality.model_validate(quality)
    return q.decision is not None and q.decision.stop == "skipped"


def _interval_name(d: Decision) -> str:
    """What the interval is: a group-sequential design's repeated confidence interval, or a confidence sequence
    (both hold over every look; the words say which method made it)."""
    level = f"{1 - d.error_rate:.0%}"
    if method_of(d.method) == "group-sequential":
        return f"repeated {level} CI"
    return f"anytime {level} CS"


def decision_line(d: Decision) -> str:
    """One line for the live display: the verdict, its interval and how many items it used."""
    unit = "%" if d.relative else "pt"
    scale = 100.0
    span = (
        f"drop {d.point * scale:+.1f} {unit} ({_interval_name(d)} {d.lo * scale:+.1f} to {d.hi * scale:+.1f})"
        if d.point is not None and d.lo is not None and d.hi is not None
        else ""
    )
    head = d.verdict or ("reference" if d.reference is None else d.stop)
    more = f"; ≈{d.more_items} more items would decide it" if d.more_items else ""
    return (
        f"decide {d.measure} vs {d.max_drop}: {head} after {d.items_used} items "
        f"({d.scored} items scored, {d.reused} reused){' ' + span if span else ''}{more}; {d.stop_reason}"
    )
