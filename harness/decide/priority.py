"""`harness run --until-decided`: which cells to measure first, which never, what the current answer is, and when a
cell or the whole matrix can no longer change it.

- **Exact exclusions first**: a cell whose planned memory (harness/plan/memory_estimate.py) exceeds
  `decide.memory_gib` never runs; a reference that does not fit still runs when a cell of its lineage does (its
  items are what their drops are measured against), but cannot be the answer.
- **Order**: references first (their cells pair with their items), then by predicted value on the objective,
  most promising first. `PREDICTORS` is the hook for measured-data predictions (harness/predict/, another
  helper's work in progress); until one answers, `heuristic` orders by the plan's facts: for throughput and
  latency, fewer weight bytes first (decoding on CPUs and GPUs is bound by reading the weights), for memory
  the planned GiB, for quality more bits first. A heuristic only orders: it never skips a cell. A predictor
  that returns an optimistic bound lets the runner skip a cell whose best case cannot beat the answer.
- **The answer** (`Winner`): the best cell on the objective among those that fit and whose drop is decided
  `within` the limit (the reference counts, as in the advisor: its drop is 0 by definition).
- **A cell that cannot change it**: its measured objective (from its load test, before its evaluation) does
  not beat the answer's; its evaluation is skipped (harness/cell/decide.py).

The objective's value is read as the advisor reads it with its defaults (advisor/query.py, advisor/select.py):
output tok/s at the load level closest to concurrency 1 (throughput), TTFT p99 of that level (latency), the
measured peak memory (memory). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from harness.decide.question import reference_of
from harness.plan.cell import CellPlan, MustBeat
from harness.result import CellResult, Level, Perf
from harness.spec.decide import Decide

HIGHER_IS_BETTER = {"throughput": True, "latency": False, "memory": False, "quality": False}


class Prediction(NamedTuple):
    value: float  # the predicted objective value, in the objective's units
    optimistic: float | None = None  # a bound the cell cannot do better than (None: none known)
    basis: str = ""


# predictors tried in order (cell, objective) -> Prediction | None; harness/predict/ registers here
PREDICTORS: list[Callable[[CellPlan, str], Prediction | None]] = []


def heuristic(cell: CellPlan, objective: str) -> Prediction | None:
    """An ordering from the plan's facts (no bound: it never skips a cell)."""
    est = cell.estimate
    if est is None:
        return None
    weight_bytes = est.params * est.bits_per_weight / 8
    if objective in ("throughput", "latency"):
        # bigger is better for ordering: fewer weight bytes -> faster decode (memory-bandwidth bound)
        return Prediction(1e9 / max(weight_bytes, 1.0), None, "fewer weight bytes first (heuristic)")
    if objective == "memory":
        return Prediction(-est.total_gib, None, "planned memory (heuristic)")
    return Prediction(est.bits_per_weight, None, "more bits first (heuristic)")


def predict(cell: CellPlan, objective: str) -> Prediction | None:
    for p in PREDICTORS:
        got = p(cell, objective)
        if got is not None:
            return got
    return heuristic(cell, objective)


def exclusion(cell: CellPlan, decide: Decide) -> str | None:
    """Why `cell` cannot be the answer whatever it measures: its planned memory exceeds decide.memory_gib."""
    est = cell.estimate
    if decide.memory_gib is None or est is None or est.total_gib <= decide.memory_gib:
        return None
    return f"planned memory {est.total_gib:.2f} GiB exceeds decide.memory_gib {decide.memory_gib:g}"


def run_order(cells: Iterable[CellPlan], decide: Decide) -> tuple[list[CellPlan], dict[str, str]]:
    """(cells to run, in order; {cell id: why never run}). References of a cell that runs come first."""
    cells = list(cells)
    out: dict[str, str] = {}
    runs = []
    for c in cells:
        why = exclusion(c, decide)
        if why:
            out[c.cell_id] = why
        else:
            runs.append(c)
    needed = {reference_of(c) for c in runs} - {None}
    refs = [c for c in cells if c.cell_id in needed or (reference_of(c) is None and c.cell_id not in out)]
    for c in refs:
        out.pop(c.cell_id, None)

    def key(c: CellPlan) -> float:
        p = predict(c, decide.objective)
        return -(p.value if p else float("-inf"))

    rest = sorted((c for c in runs if c not in refs), key=key)
    return [*refs, *rest], out


def level_for(perf: Perf | None, concurrency: float = 1.0) -> Level | None:
    """The load level the advisor reads at `concurrency`: the closest at or below it, else the lowest above."""
    levels = [lv for lv in (perf.levels if perf is not None else []) if lv.profile in ("synchronous", "concurrency")]
    if not levels:
        return None
    return min(levels, key=lambda lv: (concurrency - lv.level) if lv.level <= concurrency else 1e6 + lv.level)


def objective_value(result: CellResult | None, objective: str) -> float | None:
    """The measured value of the objective (None: not measured, or not a measured figure: quality)."""
    if result is None:
        return None
    if objective == "memory":
        return result.memory.peak_gib if result.memory else None
    lv = level_for(result.perf)
    if lv is None:
        return None
    if objective == "throughput":
        return lv.output_tok_s
    if objective == "latency":
        return lv.ttft_ms.p99
    return None


def beats(value: float, other: float, objective: str) -> bool:
    return value > other if HIGHER_IS_BETTER[objective] else value < other


@dataclass(frozen=True)
class Winner:
    cell_id: str
    label: str
    value: float
    objective: str

    def bar(self) -> MustBeat:
        return MustBeat(
            objective=self.objective,
            value=self.value,
            higher_is_better=HIGHER_IS_BETTER[self.objective],
            winner=f"{self.cell_id} {self.label}",
        )


def decided_within(cell: CellPlan, result: CellResult | None, limit: float) -> bool:
    """Whether the cell's drop is decided within `limit` (the reference: by definition)."""
    if result is None or not result.done:
        return False
    if reference_of(cell) is None:
        return True
    d = result.quality.decision if result.quality else None
    return d is not None and d.hi is not None and d.lo is not None and d.hi <= limit + 1e-12


def winner(cells: Iterable[CellPlan], results: Mapping[str, CellResult | None], decide: Decide) -> Winner | None:
    """The answer so far: the best measured objective among cells that fit and are decided within."""
    best: Winner | None = None
    for c in cells:
        r = results.get(c.cell_id)
        if exclusion(c, decide) or not decided_within(c, r, decide.limit):
            continue
        v = objective_value(r, decide.objective)
        if v is None:
            continue
        if best is None or beats(v, best.value, decide.objective):
            best = Winner(c.cell_id, c.label, v, decide.objective)
    return best


def cannot_beat(value: float | None, bar: MustBeat) -> bool:
    """Whether a measured objective `value` cannot beat the bar (a tie can: the advisor breaks it on the drop)."""
    if value is None:
        return False
    return value < bar.value if bar.higher_is_better else value > bar.value


def settled_without(cell: CellPlan, best: Winner | None, objective: str) -> str | None:
    """Why `cell` need not run at all: a predictor's optimistic bound does not beat the answer."""
    if best is None:
        return None
    p = predict(cell, objective)
    if p is None or p.optimistic is None:
        return None
    if not beats(p.optimistic, best.value, objective) and p.optimistic != best.value:
        return f"predicted at best {p.optimistic:.4g} ({p.basis}), which cannot beat {best.label} at {best.value:.4g}"
    return None
