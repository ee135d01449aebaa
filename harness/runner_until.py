"""`harness run MATRIX --until-decided`: the runner's loop that measures until the matrix's `decide:` question is
settled, and what it saved against the full grid.

One cell at a time, in harness/decide/priority.py's order (references first, then the most promising):
- a cell whose planned memory exceeds `decide.memory_gib` never runs (a reference still does when a cell of its
  lineage runs: their drops are measured against its items);
- a cell a predictor shows cannot beat the current answer does not run (`settled_without`);
- every other cell is measured (its load test before its evaluation); its evaluation is skipped when its
  measured objective cannot beat the current answer (`CellPlan.must_beat`, harness/cell/decide.py), else it
  is scored until its drop is decided;
- a cell done on this host counts as it stands, or re-runs its evaluation only where it owes the question more
  (harness/decide/settled.py), gated the same way by its stored load test.

The matrix stops when no cell is left that could change the answer. The summary estimates the full grid
(every runnable cell measured and scored to its whole budget) from the times this run measured: the per-item
time of the evaluations, the other steps' times of the cells that ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean
from typing import TYPE_CHECKING

from harness.decide.priority import (
    Winner,
    cannot_beat,
    objective_value,
    run_order,
    settled_without,
    winner,
)
from harness.decide.question import item_budget, reference_of
from harness.decide.settled import needs_evaluation
from harness.plan.cell import CellPlan, Plan
from harness.result import CellResult

if TYPE_CHECKING:
    from harness.runner import Runner


@dataclass
class DecidedSummary:
    """What `--until-decided` did and saved."""

    objective: str
    answer: Winner | None = None
    excluded: dict[str, str] = field(default_factory=dict)  # cell -> why it never ran (memory)
    not_run: dict[str, str] = field(default_factory=dict)  # cell -> why it was settled without running
    skipped_eval: dict[str, str] = field(default_factory=dict)  # cell -> why its evaluation was skipped
    ran: list[str] = field(default_factory=list)  # cells this run executed (whole or evaluation only)
    labels: dict[str, str] = field(default_factory=dict)
    items_scored: int = 0  # items lm-eval scored in this run
    items_used: int = 0  # items the cells' verdicts rest on (scored now or before)
    full_items: int = 0  # the full grid: every runnable cell at its whole budget
    wall_s: float = 0.0
    full_wall_s: float | None = None  # estimated
    outcome: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The summary as the CLI prints it."""
        out = []
        if self.answer is not None:
            out.append(
                f"answer: {self.answer.label} [{self.answer.cell_id}] ({self.objective} {self.answer.value:.4g}, "
                f"drop decided within the limit)"
            )
        else:
            out.append("answer: none yet (no cell that fits is decided within the limit)")
        for title, d in (
            ("never run (exact exclusion)", self.excluded),
            ("not run (could not change the answer)", self.not_run),
            ("evaluation skipped (could not change the answer)", self.skipped_eval),
        ):
            for cid, why in d.items():
                out.append(f"{title}: {self.labels.get(cid, cid)} [{cid}]: {why}")
        full_cells = len(self.labels)
        not_evaluated = len(self.excluded) + len(self.not_run) + len(self.skipped_eval)
        out.append(
            f"saved against the full grid ({full_cells} cells, each scored to its budget): "
            f"{len(self.excluded) + len(self.not_run)} cell(s) not run, {not_evaluated} evaluation(s) not run, "
            f"{max(self.full_items - self.items_used, 0):,} of {self.full_items:,} items not scored "
            f"({self.items_scored:,} scored in this run, {self.items_used - self.items_scored:,} reused)"
        )
        if self.full_wall_s is not None:
            out.append(
                f"time: {self.wall_s / 60:.1f} min for this run vs ≈{self.full_wall_s / 60:.1f} min estimated for the "
                f"full grid (per-item and per-step times measured in this run): ≈"
                f"{max(self.full_wall_s - self.wall_s, 0) / 60:.1f} min saved"
            )
        return out


def _items_of(cell: CellPlan) -> int:
    """Items the cell's whole budget scores on the measure."""
    assert cell.decide is not None
    return item_budget(cell.evaluation, cell.decide)[0]


def _estimate_full(cells: list[CellPlan], results: dict[str, CellResult | None], ran: list[str]) -> float | None:
    """The full grid's wall seconds: for each runnable cell, its steps other than the measured items (its own
    where it ran here, else the mean of those that did) plus its whole budget at the per-item time measured."""
    fixed, item_s = [], []
    for cid in ran:
        r = results.get(cid)
        if r is None or not r.done:
            continue
        d = r.quality.decision if r.quality else None
        if d is None or d.stop == "skipped":
            continue
        lm = (d.item_s or 0.0) * d.scored
        fixed.append(sum(r.timings.values()) - lm)
        if d.item_s:
            item_s.append(d.item_s)
    if not fixed or not item_s:
        return None
    per_item, per_cell = mean(item_s), mean(fixed)
    return sum(per_cell + _items_of(c) * per_item for c in cells)


def run_until_decided(
    runner: Runner,
    plan: Plan,
    cells: list[CellPlan],
    mine: dict[str, CellResult | None],
    force: bool,
    finished: Callable[[CellPlan, CellResult], None],
) -> DecidedSummary:
    decide = next(c.decide for c in cells if c.decide is not None)
    assert decide is not None
    t0 = time.monotonic()
    progress = runner.progress
    summary = DecidedSummary(objective=decide.objective, labels={c.cell_id: c.label for c in cells})
    results: dict[str, CellResult | None] = {c.cell_id: mine.get(c.cell_id) for c in cells}
    order, excluded = run_order(cells, decide)
    summary.excluded = excluded
    for cid, why in excluded.items():
        progress.note(f"{cid} {summary.labels[cid]}: never run: {why}")
        summary.outcome[cid] = "excluded"
    ref_items: dict[str, int] = {}

    def store(cell: CellPlan, result: CellResult) -> None:
        finished(cell, result)
        results[cell.cell_id] = runner.store.read(cell.cell_id, result.host_id) or result

    for c in order:
        best = winner(cells, results, decide)
        is_ref = reference_of(c) is None
        unneeded = None if is_ref else settled_without(c, best, decide.objective)
        if unneeded:
            summary.not_run[c.cell_id] = unneeded
            summary.outcome[c.cell_id] = "not run"
            progress.note(f"{c.cell_id} {c.label}: not run: {unneeded}")
            continue
        bar = best.bar() if best is not None and not is_ref and best.cell_id != c.cell_id else None
        r = results.get(c.cell_id)
        if r is not None and r.done and not force:
            owed = needs_evaluation(c, r, ref_items.get(reference_of(c) or ""))
            if owed is None:
                summary.outcome[c.cell_id] = "done (cached)"
                continue
            if bar is not None and cannot_beat(objective_value(r, decide.objective), bar):
                summary.skipped_eval[c.cell_id] = (
                    f"its stored {decide.objective} {objective_value(r, decide.objective):.4g} cannot beat "
                    f"{bar.winner} at {bar.value:.4g}"
                )
                summary.outcome[c.cell_id] = "done (cached)"
                continue
            progress.note(f"{c.cell_id} {c.label}: {owed}: re-running its evaluation only")
            runner.executor.run([c.model_copy(update={"evaluate_only": True, "must_beat": bar})], store, progress)
        else:
            runner.executor.run([c.model_copy(update={"must_beat": bar})], store, progress)
        summary.ran.append(c.cell_id)
        done = results.get(c.cell_id)
        summary.outcome[c.cell_id] = done.status if done is not None else "failed"
        d = done.quality.decision if done is not None and done.quality else None
        if d is not None:
            if d.stop == "skipped":
                summary.skipped_eval[c.cell_id] = d.stop_reason
            summary.items_scored += d.scored
            if is_ref:
                ref_items[c.cell_id] = d.items_used
    for c in cells:
        r = results.get(c.cell_id)
        d = r.quality.decision if r is not None and r.quality else None
        if d is not None and d.stop != "skipped":
            summary.items_used += d.items_used
        summary.full_items += _items_of(c)
    summary.answer = winner(cells, results, decide)
    summary.wall_s = time.monotonic() - t0
    summary.full_wall_s = _estimate_full(cells, results, summary.ran)
    return summary
