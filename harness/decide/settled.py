"""Whether a cell done on this host has answered the matrix's current `decide:` question, or what its evaluation
still owes (the runner then re-runs that cell's evaluation only, harness/cell/resume.py, continuing from its item
journal: nothing scored is scored again).

A stored decision stands for a changed limit when its final interval already decides it (a confidence sequence,
and a group-sequential design's repeated confidence intervals, hold at the stopping look whatever limit they are
compared with); otherwise the cell goes on while its budget and its reference's items allow. Pure.
"""

from __future__ import annotations

from harness.decide.question import measure_name, measure_tasks, method_of
from harness.plan.cell import CellPlan
from harness.result import CellResult, Decision


def verdict_now(decision: Decision, limit: float) -> str:
    """The stored interval's verdict against `limit` (a reference: within)."""
    if decision.reference is None:
        return "within"
    lo, hi = decision.lo, decision.hi
    if lo is None or hi is None:
        return "undecided"
    if hi <= limit + 1e-12:
        return "within"
    if lo > limit + 1e-12:
        return "beyond"
    return "undecided"


def same_question(cell: CellPlan, decision: Decision) -> str | None:
    """What differs between the stored decision's question and the cell's (None: the same, bar limit/budget)."""
    decide = cell.decide
    assert decide is not None
    tasks = measure_tasks(cell.evaluation, decide)
    if decision.measure != measure_name(decide) or decision.tasks != tasks:
        return f"the measure changed ({decision.measure} -> {measure_name(decide)})"
    if decision.relative != decide.drop.relative:
        return "the limit changed between relative and absolute"
    if method_of(decision.method) != decide.method:
        return f"the method changed ({method_of(decision.method)} -> {decide.method})"
    if decision.error_rate != decide.error_rate:
        return f"the error rate changed ({decision.error_rate:g} -> {decide.error_rate:g})"
    if decision.seed != decide.seed or decision.batch_items != min(decide.batch_items, decision.max_items):
        return "the item order or batch size changed"
    return None


def needs_evaluation(cell: CellPlan, result: CellResult | None, reference_items: int | None) -> str | None:
    """Why a done cell's evaluation must run again for the current question (None: it has answered it).

    reference_items: the items its reference will have scored once the references of this run ran (None:
    unknown, or the cell is a reference)."""
    if cell.decide is None or result is None or not result.done:
        return None
    if cell.draft is not None:  # a spec-decoded cell's quality is its target's (harness/cell/speculative.py):
        return None  # its target answers the question; its own evaluation only checks equal output
    decision = result.quality.decision if result.quality else None
    if decision is None:
        return "it was evaluated without `decide:`; its measured tasks are now scored until the question is decided"
    if decision.stop == "skipped":
        return "its evaluation was skipped by `--until-decided` (it could not change that run's answer)"
    changed = same_question(cell, decision)
    if changed:
        return changed + "; items scored before are reused"
    budget = cell.decide.max_items
    more_budget = budget > decision.max_items and decision.stop in ("budget", "futile", "reference")
    if decision.reference is None:  # a reference: scored its items for its cells
        return f"decide.max_items rose to {budget}: it scores more items for its cells" if more_budget else None
    if verdict_now(decision, cell.decide.limit) != "undecided":
        return None
    limit_changed = abs(decision.limit - cell.decide.limit) > 1e-12
    if decision.stop in ("within", "beyond", "futile") and decision.items_used < budget and limit_changed:
        return f"the limit changed to {cell.decide.max_drop}, which its interval does not decide"
    if more_budget:
        return f"decide.max_items rose to {budget}"
    if decision.stop in ("reference_exhausted", "reference_missing") and (reference_items or 0) > decision.items_used:
        return f"its reference now has {reference_items} items to pair with (it used {decision.items_used})"
    return None
