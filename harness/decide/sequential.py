"""The sequential procedure: pair a cell's per-item scores with its reference's item by item, look at the
confidence sequence (harness/decide/confseq.py) after every batch, and stop at the first decided verdict, at the
budget, or where the items run out. One definition for the evaluate worker (which scores the items as it goes,
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

from harness.decide.confseq import DropInterval, drop_interval, log_wealth
from harness.decide.order import ItemKey, Step

# why a cell's sequential evaluation ended
Stop = Literal[
    "within",  # the confidence sequence lies at or below the limit
    "beyond",  # ... wholly above it
    "budget",  # decide.max_items items scored, still undecided
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
) -> Outcome:
    """Run the procedure over items already scored (the first `cap` of d, w): look after every `batch`
    items, stop at the first decided verdict; `exhausted` names why the items end at `cap` (budget,
    population, reference_exhausted)."""
    cap = min(cap, len(d))
    looks: list[Look] = []
    ci = interval(d[:0], None if w is None else w[:0], alpha, limit)
    for k in look_schedule(batch, cap):
        ci = interval(d[:k], None if w is None else w[:k], alpha, limit)
        looks.append(Look(k, ci.point, ci.lo, ci.hi))
        v = ci.verdict(limit)
        if v != "undecided":
            return Outcome(v, k, v, looks, ci)  # type: ignore[arg-type]  # v is within | beyond here
    return Outcome("undecided", cap, exhausted, looks, ci)


def more_items(
    d: np.ndarray, w: np.ndarray | None, alpha: float, limit: float, reps: int = 16, cap: int = 200_000
) -> int | None:
    """≈ how many more items would decide an undecided drop: the observed items resampled (with replacement)
    to growing lengths N, the smallest N at which most resamples reject the limit itself. An estimate: it
    assumes the drop and the spread stay as measured. None: too few items, the estimate sits on the limit,
    or more than `cap` items would be needed."""
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
