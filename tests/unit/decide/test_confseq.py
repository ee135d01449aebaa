"""The confidence sequence's error rate under repeated looks, shown by simulation (harness/decide/confseq.py).

Paired 0/1 items with a known true drop: the reference right with probability p, the cell flipping some of its
answers (down and up, with extra symmetric flips as real compressed models have) so that E[ref - cell] is the
drop. The procedure looks after every batch and stops at its first verdict; across all looks its chance of a
false verdict must stay at or below the stated error rate. A fixed-n normal interval re-checked after each
batch is shown to exceed it: that is the error the confidence sequence exists to avoid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.decide.confseq import DropInterval, drop_interval, interval_path, log_wealth, naive_interval

ALPHA = 0.05
REPS = 400
ROUNDS = 400
BATCH = 20


def paired(rng, n: int, p_ref: float, drop: float, tasks: int = 1, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Per-round means of reference and cell scores over `tasks` items each, with E[ref - cell] = drop."""
    ref = rng.random((n, tasks)) < p_ref
    down = max(drop, 0.0) / p_ref + noise  # P(cell wrong | ref right)
    up = max(-drop, 0.0) / (1 - p_ref) + noise * p_ref / (1 - p_ref)  # P(cell right | ref wrong)
    u = rng.random((n, tasks))
    cell = np.where(ref, u >= down, u < up)
    return ref.astype(float).mean(1), cell.astype(float).mean(1)


def first_verdict(d: np.ndarray, w: np.ndarray | None, limit: float) -> str:
    """Run the sequential procedure: look after every BATCH rounds, stop at the first decided verdict. The
    grid is narrowed to +-10 points around the limit (the verdict depends only on which side of it the
    interval lies)."""
    looks = list(range(BATCH, len(d) + 1, BATCH))
    for ci in interval_path(d, w, ALPHA, looks, lo=limit - 0.1, hi=limit + 0.1, extra=(limit,)):
        v = ci.verdict(limit)
        if v != "undecided":
            return v
    return "undecided"


def naive_first_verdict(d: np.ndarray, w: np.ndarray | None, limit: float) -> str:
    for k in range(BATCH, len(d) + 1, BATCH):
        lo, hi = naive_interval(d[:k], None if w is None else w[:k])
        if hi <= limit:
            return "within"
        if lo > limit:
            return "beyond"
    return "undecided"


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_at_the_limit_no_verdict_is_wrong_more_often_than_the_error_rate(relative):
    """True drop exactly at the limit: any decided verdict is a false one. The rate over all looks stays at
    or below alpha (with a margin for the simulation's own noise: 3 standard errors), while the naive
    interval re-checked after every batch is wrong several times as often."""
    rng = np.random.default_rng(1 if relative else 0)
    p, limit = 0.6, 0.05
    true_abs = limit * p if relative else limit  # a relative drop of 5 % at p = 0.6 is 3 points
    seq = naive = 0
    for _ in range(REPS):
        r, c = paired(rng, ROUNDS, p, true_abs)
        w = r if relative else None
        seq += first_verdict(r - c, w, limit) != "undecided"
        naive += naive_first_verdict(r - c, w, limit) != "undecided"
    margin = 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)
    assert seq / REPS <= ALPHA + margin, (seq / REPS, naive / REPS)
    assert naive / REPS > 2 * ALPHA, (seq / REPS, naive / REPS)  # the error the sequence avoids


@pytest.mark.parametrize("true_drop,wrong", [(0.0, "beyond"), (0.15, "within")], ids=["no-drop", "thrice-the-limit"])
def test_off_the_limit_the_wrong_side_is_rare_and_the_right_side_is_found(true_drop, wrong):
    rng = np.random.default_rng(2)
    limit = 0.05
    verdicts = []
    for _ in range(150):
        r, c = paired(rng, ROUNDS, 0.6, true_drop, noise=0.05)
        verdicts.append(first_verdict(r - c, None, limit))
    assert verdicts.count(wrong) / len(verdicts) <= ALPHA
    right = "within" if wrong == "beyond" else "beyond"
    # 400 rounds mostly decide a drop 5 points off the limit when few answers flip (a real 8-bit cell)
    assert verdicts.count(right) / len(verdicts) >= 0.7, verdicts.count(right)


def test_the_wealth_at_the_true_drop_rarely_reaches_one_over_alpha_ever():
    """Ville's inequality, checked directly on the exact candidate (every round, not only at looks)."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(REPS):
        r, c = paired(rng, ROUNDS, 0.5, 0.02, tasks=3)
        hits += bool((log_wealth(r - c, np.ones(ROUNDS), np.array([0.02]), ALPHA)[0] >= math.log(1 / ALPHA)).any())
    assert hits / REPS <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)


def test_a_clear_drop_is_decided_in_a_few_dozen_items():
    """A student far below its teacher (a 30-point drop) is `beyond` a 5 % limit after a few dozen rounds."""
    rng = np.random.default_rng(4)
    r, c = paired(rng, 200, 0.6, 0.30, noise=0.05)
    looks = list(range(10, 201, 10))
    k = next(ci.rounds for ci in interval_path(r - c, r, ALPHA, looks) if ci.verdict(0.05) == "beyond")
    assert k <= 60, k


def test_interval_shape_and_empty_input():
    assert drop_interval(np.array([]), None, ALPHA) == DropInterval(0, None, None, None, ALPHA, False)
    assert DropInterval(0, None, None, None, ALPHA, False).verdict(0.05) == "undecided"
    ci = drop_interval(np.zeros(50), None, ALPHA)
    assert ci.lo is not None and ci.hi is not None and ci.lo < 0 < ci.hi and ci.point == 0.0
    ci2 = drop_interval(np.zeros(500), None, ALPHA)
    assert ci2.hi is not None and ci.hi is not None and ci2.hi - ci2.lo < ci.hi - ci.lo  # narrows with rounds
