"""The question of a matrix's `decide:` block (harness/spec/decide.py) against its evaluation: which tasks and
per-item metrics make the measure, whether they can (one clear error each, for the plan), how many items a cell
may score, and what the evaluate worker is handed (`SequentialSpec`).

The measure: `aggregate` is every task of the evaluation with a per-item 0/1 primary metric (the advisor's
default `avg_acc`: harness/result_facts.primary_metric, harness/result.is_item_metric); `{task, metric}` is
one task's metric (its primary one when unset). A perplexity task has no per-item 0/1 score and cannot be a
measure. Pure: the plan, the cell's evaluate step and the advisor read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.result import is_item_metric
from harness.result_facts import primary_metric
from harness.spec.decide import Decide, TaskMeasure, TasksMeasure
from harness.spec.evaluation import LMEvalSpec

if TYPE_CHECKING:
    from harness.plan.cell import CellPlan

METHODS = {
    "group-sequential": "repeated confidence intervals of a group-sequential design planned from the budget "
    "(Hwang-Shih-DeCani spending, gamma -4; Jennison & Turnbull 1984), with a non-binding futility stop "
    "(conditional power under the current trend < 10 %; harness/decide/groupseq.py), over paired items in a "
    "seeded random order",
    "confidence-sequence": "anytime-valid confidence sequence (hedged betting, Waudby-Smith & Ramdas 2024, "
    "JRSS-B 86(1); harness/decide/confseq.py) over paired items in a seeded random order",
}
METHOD = METHODS["confidence-sequence"]  # the method of decisions stored before `decide.method` existed


def method_text(method: str) -> str:
    """A `decide.method` in words, as a decision stores it (`Decision.method`)."""
    return METHODS[method]


def method_of(text: str) -> str:
    """The `decide.method` a stored decision's method words name."""
    return next((k for k, v in METHODS.items() if v == text), "confidence-sequence")


def measure_name(decide: Decide) -> str:
    """`aggregate`, or `<task>/<metric>` with the task's primary metric filled in (as the advisor names it)."""
    m = decide.measure
    if isinstance(m, TasksMeasure):
        return "aggregate:" + ",".join(m.tasks)  # the advisor's `--tasks` names it the same way
    if not isinstance(m, TaskMeasure):
        return "aggregate"
    return f"{m.task}/{m.metric or primary_metric(m.task) or 'primary'}"


def measure_tasks(evaluation: LMEvalSpec, decide: Decide) -> dict[str, str]:
    """task -> its per-item metric on the measure (empty when the measure names nothing usable: see
    `decide_problems`)."""
    m = decide.measure
    names = [t.name for t in evaluation.tasks]
    if isinstance(m, TaskMeasure):
        metric = m.metric or primary_metric(m.task)
        return {m.task: metric} if m.task in names and metric and is_item_metric(metric) else {}
    out = {}
    for name in m.tasks if isinstance(m, TasksMeasure) else names:
        if name not in names:
            continue
        metric = primary_metric(name)
        if metric is not None and is_item_metric(metric):
            out[name] = metric
    return out


def _known_metrics(task: str) -> set[str] | None:
    """The metric keys lm-eval reports per item for `task` where the offline catalog knows them (None: not
    known before lm-eval runs, e.g. a hub task or a dq_* task)."""
    from harness.evaluate import catalog

    leaves = catalog.leaves(task)
    if not leaves:
        return None
    keys: set[str] = set()
    for lf in leaves:
        for m in lf.metrics:
            keys |= {m if f == "none" else f"{m},{f}" for f in lf.filters}
    return keys


def decide_problems(evaluation: LMEvalSpec, decide: Decide) -> list[str]:
    """What makes `decide:` unanswerable with this evaluation: one message each (field, value, fix)."""
    names = [t.name for t in evaluation.tasks]
    m = decide.measure
    if isinstance(m, TaskMeasure):
        if m.task not in names:
            return [
                f"decide.measure.task: {m.task!r} is not one of evaluation.tasks ({', '.join(names)}); "
                f"name one of them or use `measure: aggregate`"
            ]
        metric = m.metric or primary_metric(m.task)
        if metric is None:
            return [
                f"decide.measure: {m.task!r} has no per-item accuracy (a perplexity task scores a corpus, not "
                f"items that can be paired): name a task with acc, acc_norm or exact_match, or use "
                f"`measure: aggregate`"
            ]
        if not is_item_metric(metric):
            return [
                f"decide.measure.metric: {metric!r} of {m.task!r} is not a per-item 0/1 score; the sequential "
                f"evaluation pairs acc, acc_norm or exact_match[,<filter>] item by item"
            ]
        known = _known_metrics(m.task)
        if known is not None and metric not in known:
            return [f"decide.measure.metric: {m.task!r} reports no {metric!r} (it reports {', '.join(sorted(known))})"]
        return []
    if isinstance(m, TasksMeasure):
        out = []
        for t in m.tasks:
            if t not in names:
                out.append(
                    f"decide.measure.tasks: {t!r} is not one of evaluation.tasks ({', '.join(names)}); name only "
                    f"tasks the evaluation scores"
                )
            elif t not in measure_tasks(evaluation, decide):
                out.append(
                    f"decide.measure.tasks: {t!r} has no per-item 0/1 primary metric (a perplexity task scores a "
                    f"corpus, not items that can be paired); leave it out of the measure"
                )
        return out
    if not measure_tasks(evaluation, decide):
        return [
            "decide.measure: aggregate, but no task of evaluation.tasks has a per-item 0/1 primary metric "
            f"({', '.join(names)}: perplexity tasks cannot be a measure); add e.g. arc_easy or name a task"
        ]
    return []


def item_budget(evaluation: LMEvalSpec, decide: Decide) -> tuple[int, str]:
    """(the most items a cell scores, why): decide.max_items, or about fewer where a measured task has few
    documents known to the offline catalog (the item sequence ends when a drawn task has none left:
    harness/decide/order.item_sequence, about k x its documents with k measured tasks)."""
    from harness.evaluate.catalog import doc_count

    limits = {t.name: t.limit for t in evaluation.tasks}
    tasks = sorted(measure_tasks(evaluation, decide))
    budget, why = decide.max_items, f"decide.max_items {decide.max_items}"
    for task in tasks:
        n = doc_count(task, limits.get(task))
        if n is not None and n * len(tasks) < budget:
            budget = n * len(tasks)
            why = f"about {len(tasks)} x {n}: {task} has {n} documents" + (
                f" (limit {limits[task]})" if limits.get(task) else ""
            )
    return budget, why


class SequentialSpec(BaseModel):
    """What the evaluate worker needs to score a cell sequentially (harness/evaluate/sequential.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    measure: dict[str, str]  # task -> per-item metric
    measure_name: str
    max_drop: str  # as written ("5%", "1.5pt")
    relative: bool
    limit: float  # in the interval's units (harness/spec/decide.Decide.limit)
    error_rate: float
    method: Literal["group-sequential", "confidence-sequence"] = "group-sequential"
    max_items: int
    batch_items: int
    seed: int
    journal_dir: str  # this cell's item journals
    # the reference's item journals and id; None: this cell is the reference (it scores its items, no verdict)
    reference_dir: str | None = None
    reference_id: str | None = None
    # dqbench's task hash per measured task (config + data + lm-eval version): part of the journal's pin
    task_hashes: dict[str, str] = Field(default_factory=dict)


def reference_of(cell: CellPlan) -> str | None:
    """The cell a drop is measured against: the lineage's root (harness/plan/lineage.py), which the plan
    knows as the teacher of a student cell and the parent of any other; None for the reference itself."""
    return cell.teacher_id or cell.parent_id


def question_lines(evaluation: LMEvalSpec, decide: Decide) -> list[str]:
    """The question in words, for `harness plan` and the run's header."""
    tasks = measure_tasks(evaluation, decide)
    budget, why = item_budget(evaluation, decide)
    d = decide.drop
    of = "of the reference's score" if d.relative else "accuracy points"
    what = ", ".join(f"{t} {m}" for t, m in tasks.items())
    lines = [
        f"question (decide:): is the drop of {measure_name(decide)} ({what}) at most {d} {of}? error rate "
        f"{decide.error_rate:g} over every look: {method_text(decide.method)}",
        f"budget per cell: at most {budget} items ({why}; each item from a task drawn at random), looking every "
        f"{min(decide.batch_items, budget)} items; each reference scores its whole budget first, for its cells "
        f"to pair with",
    ]
    if decide.memory_gib is not None or decide.objective:
        mem = f"memory <= {decide.memory_gib:g} GiB, " if decide.memory_gib is not None else ""
        lines.append(f"answer: {mem}best {decide.objective} among cells decided within the limit")
    return lines


def cell_budget(cell: CellPlan, decide: Decide) -> str:
    """One cell's part of the question, for the plan table."""
    budget, _ = item_budget(cell.evaluation, decide)
    ref = reference_of(cell)
    return f"{budget} (reference)" if ref is None else f"<= {budget} vs {ref}"
