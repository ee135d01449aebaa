"""Power before running: the smallest paired drop each evaluation task's items can detect.

A cell's quality drop is a paired comparison with its reference over the same items (harness/evaluate/
reference.py bootstraps it). For an item scored 0/1 in both, d = ref - cell is -1, 0 or +1, and

    Var(d) = (p10 + p01) - (p10 - p01)^2  <=  p10 + p01          (the discordance: items the two score apart)

A two-sided test at 95 % confidence detects a true drop with 80 % power once it reaches the **minimum
detectable effect** MDE = (z_0.975 + z_0.80) * sqrt(Var(d) / n), and resolving a drop D needs
n = (z_0.975 + z_0.80)^2 * Var(d) / D^2 items (a normal approximation; fine from a few dozen items).

Var(d) is estimated from the best that is known, and each figure says which (`basis`):
- `bound`, before any result: the two cells' accuracy p = 0.5 and independent errors, Var(d) <= 2p(1-p) = 0.5.
  With independent errors the discordance is p_r(1-p_c) + p_c(1-p_r), i.e. 2p(1-p) for a small drop, and
  2p(1-p) <= 0.5 for every p (its maximum is at p = 0.5). A compressed model errs mostly where its reference
  errs (positive correlation), which lowers the discordance below the independent figure: the bound holds for
  every cell that is not worse than independent of its reference.
- `reference`, once the reference's result is stored: the same bound at its measured accuracy p.
- `discordance`, once a cell of the reference's lineage has items paired with it (same host): the observed
  p10 + p01, the largest over those cells (cells not run yet may disagree more). None discordant among k
  items reads as 3/k (the rule of three: the upper 95 % bound of a rate with no event), not as 0.

Tasks without a per-item 0/1 accuracy (dq_pydoc_ppl: a perplexity) have no such figure. Pure: results come in
through a callable, nothing is loaded or run; no heavy imports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from statistics import NormalDist
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from harness.evaluate import catalog
from harness.plan.cell import CellPlan, Plan
from harness.plan.lineage import reference_ids
from harness.result import CellResult
from harness.result_facts import primary_metric
from harness.spec.drop import Drop, parse_drop
from harness.spec.evaluation import LMEvalSpec

Z_CONFIDENCE = NormalDist().inv_cdf(0.975)  # two-sided 95 %: 1.95996
Z_POWER = NormalDist().inv_cdf(0.80)  # 80 % power: 0.84162
Z_SUM = Z_CONFIDENCE + Z_POWER  # 2.80159
PRIOR_P = 0.5  # the accuracy assumed before any result: 2p(1-p) is largest there
# metrics whose per-item value is 0/1 (with lm-eval's filter after a comma: "exact_match,strict-match")
# pass@1 of one greedy sample (HumanEval as lm-eval and dqbench score it) is 0/1 per item too
ACCURACY_METRICS = ("acc", "acc_norm", "exact_match", "pass@1")
Basis = Literal["bound", "reference", "discordance"]


def var_bound(p: float) -> float:
    """Var(d) under independent errors at accuracy p for both cells: 2p(1-p), at most 0.5."""
    return 2 * p * (1 - p)


def mde(var_d: float, n: int) -> float:
    """The smallest paired drop (a fraction; x100 for points) n items detect at 95 % two-sided, 80 % power."""
    return Z_SUM * math.sqrt(var_d / n)


def items_for(var_d: float, drop: float) -> int:
    """Items that make `drop` (a fraction) the minimum detectable effect."""
    return math.ceil(Z_SUM**2 * var_d / drop**2)


class TaskPower(BaseModel):
    """One task's power figure against one reference (reference None: before any result, every model)."""

    model_config = ConfigDict(frozen=True)

    task: str
    metric: str | None = None
    items: int | None = None  # n: the items each cell is scored on (after `limit`)
    task_docs: int | None = None  # the task's documents without a limit
    reference: str | None = None  # the reference cell id the estimate comes from
    model: str | None = None
    basis: Basis | None = None
    basis_note: str | None = None  # the estimate in words
    p: float | None = None  # the reference's accuracy (measured, or PRIOR_P)
    var_d: float | None = None
    mde_pt: float | None = None  # accuracy points
    note: str | None = None  # why there is no figure
    resolve_drop: str | None = None
    resolve_pt: float | None = None
    resolved: bool | None = None
    items_needed: int | None = None
    warning: str | None = None


def accuracy_metric(task: str) -> str | None:
    """The task's headline metric (harness/result_facts.primary_metric) when it is a per-item 0/1 accuracy
    ("acc", "acc_norm", "exact_match,strict-match"); None for a perplexity task or one unknown here."""
    m = primary_metric(task)
    return m if m is not None and m.partition(",")[0] in ACCURACY_METRICS else None


def _stored_metric(task: str, roots: list[str], results: Callable[[str], Mapping[str, CellResult]]) -> str | None:
    """The first 0/1 metric a reference's stored result has items of (a hub task the plan knows nothing of)."""
    for root in roots:
        for r in results(root).values():
            t = r.quality.tasks.get(task) if r.quality else None
            found = sorted({m for i in (t.items if t else []) for m in i.scores})
            m = next((m for m in found if m.partition(",")[0] in ACCURACY_METRICS), None)
            if m is not None:
                return m
    return None


def _reference_p(ref: Mapping[str, CellResult], host_id: str | None, task: str, metric: str):
    """(accuracy, items, host) of the reference's stored result, this host's first; None without one."""
    for h in sorted(ref, key=lambda h: h != host_id):
        items = ref[h].items(task, metric)
        if items:
            return sum(items.values()) / len(items), len(items), h
        q = ref[h].quality
        t = q.tasks.get(task) if q is not None else None
        v = t.metrics[metric].value if t is not None and metric in t.metrics else None
        if t is not None and v is not None:  # no items (a result upgraded without them): its score still serves
            return v, t.n, h
    return None


class Discordance(NamedTuple):
    value: float  # p10 + p01 (3/k when none of k items was scored apart)
    items: int  # k: items the two results share
    cell: str  # the cell it was observed on
    host: str
    cells: int  # how many cells had items paired with the reference


def _discordance(
    ref: Mapping[str, CellResult], cells: Mapping[str, Mapping[str, CellResult]], task: str, metric: str
) -> Discordance | None:
    """The largest observed p10 + p01 over the lineage's cells with items paired with the reference's on the
    same host; None when no cell has any."""
    found: list[Discordance] = []
    for cid, by_host in cells.items():
        for h, r in by_host.items():
            if h not in ref:
                continue  # items from another host differ in the last digits: not a pairing
            a, b = ref[h].items(task, metric), r.items(task, metric)
            common = a.keys() & b.keys()
            if not common:
                continue
            k = len(common)
            apart = sum(a[i] != b[i] for i in common)
            found.append(Discordance(apart / k if apart else min(1.0, 3 / k), k, cid, h, 0))
    if not found:
        return None
    return max(found, key=lambda d: d.value)._replace(cells=len({d.cell for d in found}))


def _estimate(
    task: str,
    metric: str,
    root: str | None,
    lineage: list[str],
    results: Callable[[str], Mapping[str, CellResult]],
    host_id: str | None,
) -> tuple[Basis, float, float, str, int | None]:
    """(basis, Var(d), p, words, items seen in a stored result) for one reference."""
    ref = results(root) if root else {}
    got = _reference_p(ref, host_id, task, metric) if ref else None
    if got is None:
        return "bound", var_bound(PRIOR_P), PRIOR_P, _BOUND_NOTE, None
    p, seen, h = got
    where = "" if h == host_id else f" on host {h}"
    disc = _discordance(ref, {c: results(c) for c in lineage}, task, metric)
    if disc is not None:
        of = f"the largest of {disc.cells} cells: " if disc.cells > 1 else ""
        on = "" if disc.host == host_id else f" on host {disc.host}"
        words = f"observed discordance {disc.value:.3f} over {disc.items} paired items ({of}cell {disc.cell}{on})"
        return "discordance", disc.value, p, words, seen
    return "reference", var_bound(p), p, f"reference accuracy p={p:.3f}{where}: 2p(1-p)={var_bound(p):.3f}", seen


_BOUND_NOTE = "bound: p=0.5, independent errors: 2p(1-p)=0.5"


def _group_limit(task: str, need: int) -> int:
    """The smallest per-subtask limit under which a group scores `need` items (subtasks differ in size)."""
    lo, hi = 1, max(lf.docs for lf in catalog.leaves(task) or [])
    while lo < hi:
        mid = (lo + hi) // 2
        if (catalog.doc_count(task, mid) or 0) >= need:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _resolve(row: TaskPower, drop: Drop) -> TaskPower:
    assert row.p is not None and row.var_d is not None and row.mde_pt is not None and row.items is not None
    pt = drop.points(row.p)
    upd: dict = {"resolve_drop": str(drop), "resolve_pt": pt, "resolved": row.mde_pt <= pt}
    if row.mde_pt > pt:
        need = items_for(row.var_d, pt / 100)
        conv = f" ({drop} of p={row.p:.3f})" if drop.relative else ""
        tail = f"needs about {need:,} items"
        if row.task_docs is not None and need > row.task_docs:
            tail += f", more than the task's {row.task_docs:,} documents: not resolvable on this task alone"
        elif len(catalog.leaves(row.task) or []) > 1:
            tail += f" in all: set its limit (per subtask) to {_group_limit(row.task, need)} or more"
        elif row.task_docs is not None:
            tail += f": set its limit to {need} or more"
        upd["items_needed"] = need
        upd["warning"] = (
            f"{row.task}: with {row.items:,} items the smallest detectable drop is {row.mde_pt:.1f} pt, larger "
            f"than resolve_drop {pt:.3g} pt{conv}; {tail}"
        )
    return row.model_copy(update=upd)


def plan_power(
    plan: Plan,
    evaluation: LMEvalSpec,
    results: Callable[[str], Mapping[str, CellResult]] = lambda _: {},
    host_id: str | None = None,
) -> list[TaskPower]:
    """Per task (and per reference once results exist) the minimum detectable paired drop and, with
    `evaluation.resolve_drop`, whether it resolves that drop. `results(cell_id)` -> host id -> done result."""
    parents = {c.cell_id: c.parent_id for c in plan.cells}
    refs = reference_ids(parents, parents)
    roots = [c for c in plan.cells if refs[c.cell_id] == c.cell_id]
    # no cells (nothing planned): the bound alone, for no reference in particular
    anchors: list[CellPlan | None] = [*roots] or [None]
    drop = parse_drop(evaluation.resolve_drop) if evaluation.resolve_drop else None
    out: list[TaskPower] = []
    for t in evaluation.tasks:
        n = catalog.doc_count(t.name, t.limit)
        docs = catalog.doc_count(t.name)
        metric = accuracy_metric(t.name)
        known = catalog.is_dq(t.name) or catalog.leaves(t.name) is not None
        if metric is None and not known:  # a hub task: its stored results may say what it scores
            metric = _stored_metric(t.name, [c.cell_id for c in roots], results)
        if metric is None:
            note = "no per-item accuracy" if known else "unknown (needs the hub)"
            out.append(TaskPower(task=t.name, items=n, task_docs=docs, note=note))
            continue
        rows = []
        for root in anchors:
            rid = root.cell_id if root else None
            lineage = [c for c, r in refs.items() if r == rid and c != rid]
            basis, var_d, p, words, seen = _estimate(t.name, metric, rid, lineage, results, host_id)
            items = n if n is not None else seen
            measured = root is not None and basis != "bound"
            row = TaskPower(
                task=t.name,
                metric=metric,
                items=items,
                task_docs=docs,
                reference=rid if measured else None,
                model=root.model.name if root is not None and measured else None,
                basis=basis,
                basis_note=words,
                p=p,
                var_d=var_d,
                mde_pt=mde(var_d, items) * 100 if items else None,
                note=None if items else "unknown (needs the hub)",
            )
            rows.append(_resolve(row, drop) if drop and row.mde_pt is not None else row)
        # before any result every reference reads the same bound: one row for them all
        out += [r for r in rows if r.basis != "bound"] + [r for r in rows if r.basis == "bound"][:1]
    return out
