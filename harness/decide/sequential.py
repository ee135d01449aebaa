"""The sequential procedure: pair a cell's per-item scores with its reference's item by item, look at the drop's
interval after every batch, and stop at the first decided verdict, at a futile look (group-sequential only), at
the budget, or where the items run out. The interval is the matrix's `decide.method`: a group-sequential
design's repeated confidence interval (harness/decide/groupseq.py) or the confidence sequence
(harness/decide/confseq.py); `Design` holds the choice and the planned looks.

One definition for the evaluate worker (which scores the items as it goes,
harness/evaluate/sequential.py), bench/sequential.py (which replays stored items) and the tests: `replay` on
the same scores gives what the worker gave.

A step is one item of the measure's sequence (harness/decide/order.item_sequence: a task drawn at random, its
next document): D_j = reference - cell on that item, W_j = the reference's score (relative drop) or 1
(absolute). Looks fall after every `batch` items and at the cap.

Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.decide import groupseq
from harness.decide.confseq import GRID_STEP, DropInterval, drop_interval, log_wealth
from harness.decide.order import ItemKey, Step

Method = Literal["group-sequential", "confidence-sequence"]

# why a cell's sequential evaluation ended
Stop = Literal[
    "within",  # the confidence sequence lies at or below the limit
    "beyond",  # ... wholly above it
    "budget",  # decide.max_items items scored, still undecided
    "futile",  # group-sequential: a verdict by the budget had become unlikely (harness/decide/groupseq.futile)
    "population",  # the measure's tasks have no more documents (or their `limit` is reached)
    "reference_exhausted",  # the reference has scored no more items to pair with
    "reference_missing",  # the reference has no usable items (not run on this host, other settings)
    "reference",  # the reference itself: it scored its items for the cells to pair with
    "skipped",  # `--until-decided`: the cell cannot change the answer, its evaluation was not run
]
RELATIVE_RANGE = (-2.0, 1.0)  # candidate relative drops searched: a cell 3x better than its reference reads -2
ABSOLUTE_RANGE = (-1.0, 1.0)


def paired_items(
    sequence: Sequence[Step],
    cell: Mapping[str, Mapping[ItemKey, float]],
    ref: Mapping[str, Mapping[ItemKey, float]] | None,
    relative: bool,
    upto: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(D, W) of the leading steps of `sequence` that both sides scored (W None for an absolute drop). A
    reference of None stands for the cell itself (no steps: a reference has no drop)."""
    if ref is None:
        return np.zeros(0), (np.zeros(0) if relative else None)
    d, w = [], []
    for t, k in sequence[:upto]:
        if k not in cell.get(t, {}) or k not in ref.get(t, {}):
            break
        d.append(ref[t][k] - cell[t][k])
        w.append(ref[t][k])
    return np.asarray(d, float), (np.asarray(w, float) if relative else None)


def scored_items(sequence: Sequence[Step], scored: Mapping[str, Mapping[ItemKey, object]]) -> int:
    """How many leading steps of `sequence` have their item scored."""
    for j, (t, k) in enumerate(sequence):
        if k not in scored.get(t, {}):
            return j
    return len(sequence)


def look_schedule(batch: int, cap: int) -> list[int]:
    """The items after which the procedure looks: every `batch` items, and at the cap."""
    looks = list(range(batch, cap, batch)) if batch > 0 else []
    return [*looks, cap] if cap > 0 else []


def interval(d: np.ndarray, w: np.ndarray | None, alpha: float, limit: float) -> DropInterval:
    """The confidence sequence after len(d) items, the limit tested exactly."""
    lo, hi = RELATIVE_RANGE if w is not None else ABSOLUTE_RANGE
    return drop_interval(d, w, alpha, lo=lo, hi=hi, extra=(limit,))


@dataclass(frozen=True)
class Design:
    """How a cell's evaluation looks: the method, its error rate and limit, the items between looks and the
    items the looks are planned for (min(budget, the measure's items): a group-sequential design's information
    fractions are looks / planned; the confidence sequence ignores the plan)."""

    method: Method
    alpha: float
    limit: float
    batch: int
    planned: int

    @property
    def looks(self) -> list[int]:
        return look_schedule(self.batch, self.planned)

    def boundary(self, done: list[int]) -> float:
        """The group-sequential boundary of the last of the looks `done` (items): the planned design's where they
        are its first looks; a look off the plan (the reference's items ended first) gets its own, from the
        same spending function (a boundary depends only on the looks up to it)."""
        plan = self.looks
        if done == plan[: len(done)]:
            return groupseq.boundaries(self.alpha, groupseq.fractions_of(plan, self.planned))[len(done) - 1]
        return groupseq.boundaries(self.alpha, groupseq.fractions_of(done, self.planned))[-1]

    def grid(self, relative: bool) -> np.ndarray:
        """The candidate drops an interval is searched over, the limit among them (as the confidence sequence's)."""
        lo, hi = RELATIVE_RANGE if relative else ABSOLUTE_RANGE
        return np.unique(np.round(np.append(np.arange(lo, hi + GRID_STEP / 2, GRID_STEP), self.limit), 9))

    @property
    def last_boundary(self) -> float:
        return self.boundary(self.looks) if self.looks else groupseq.MAX_C

    def at(self, d: np.ndarray, w: np.ndarray | None, done: list[int]) -> tuple[DropInterval, bool]:
        """(the interval after len(d) items, the last of the looks `done`; whether the look is futile)."""
        if self.method == "confidence-sequence":
            return interval(d, w, self.alpha, self.limit), False
        ci = groupseq.repeated_interval(d, w, self.alpha, self.boundary(done), self.grid(w is not None))
        fut = groupseq.futile(d, w, self.limit, self.planned, self.last_boundary)
        return ci, fut

    def more_items(self, d: np.ndarray, w: np.ndarray | None) -> int | None:
        """≈ items more that would decide an undecided drop (an estimate)."""
        if self.method == "confidence-sequence":
            return more_items(d, w, self.alpha, self.limit)
        n = groupseq.items_to_decide(d, w, self.limit, self.last_boundary)
        return None if n is None or n > 200_000 else max(n - len(d), 1)


@dataclass(frozen=True)
class Look:
    items: int
    point: float | None
    lo: float | None
    hi: float | None


@dataclass(frozen=True)
class Outcome:
    """What the procedure concluded: the verdict, after how many items, its looks, and why it stopped."""

    verdict: str  # within | beyond | undecided
    items: int
    stop: Stop
    looks: list[Look]
    final: DropInterval


def replay(
    d: np.ndarray,
    w: np.ndarray | None,
    alpha: float,
    limit: float,
    batch: int,
    cap: int,
    exhausted: Stop = "budget",
    *,
    method: Method = "confidence-sequence",
    planned: int | None = None,
) -> Outcome:
    """Run the procedure over items already scored (the first `cap` of d, w): look after every `batch`
    items, stop at the first decided verdict (or futile look); `exhausted` names why the items end at `cap`
    (budget, population, reference_exhausted); `planned`: the items the design planned for (default `cap`)."""
    cap = min(cap, len(d))
    design = Design(method, alpha, limit, batch, planned or cap)
    looks: list[Look] = []
    done: list[int] = []
    ci = interval(d[:0], None if w is None else w[:0], alpha, limit)
    for k in look_schedule(batch, cap):
        done.append(k)
        ci, fut = design.at(d[:k], None if w is None else w[:k], done)
        looks.append(Look(k, ci.point, ci.lo, ci.hi))
        v = ci.verdict(limit)
        if v != "undecided":
            return Outcome(v, k, v, looks, ci)  # type: ignore[arg-type]  # v is within | beyond here
        if fut:
            return Outcome("undecided", k, "futile", looks, ci)
    return Outcome("undecided", cap, exhausted, looks, ci)


def more_items(
    d: np.ndarray, w: np.ndarray | None, alpha: float, limit: float, reps: int = 16, cap: int = 200_000
) -> int | None:
    """≈ how many more items would decide an undecided drop on the confidence sequence: the observed items
    resampled (with replacement) to growing lengths N, the smallest N at which most resamples reject the limit
    itself. An estimate: it assumes the drop and the spread stay as measured. None: too few items, the estimate
    sits on the limit, or more than `cap` items would be needed."""
    n = len(d)
    if n < 2:
        return None
    wv = np.ones(n) if w is None else np.asarray(w, float)
    if wv.sum() <= 0:
        return None
    point = float(d.sum() / wv.sum())
    if abs(point - limit) < 1e-9:
        return None
    rng = np.random.default_rng(20240101)
    cand = np.array([limit])
    size = n
    while size < cap:
        size = int(math.ceil(size * 1.25))
        idx = rng.integers(0, n, (reps, size))
        hits = sum(bool((log_wealth(d[i], wv[i], cand, alpha)[0] >= math.log(1 / alpha)).any()) for i in idx)
        if hits * 2 >= reps:
            return size - n
    return None
