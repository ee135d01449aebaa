"""An anytime-valid confidence sequence for a paired quality drop: the interval the sequential evaluation
recomputes after every batch of items and may stop on, without inflating its error rate.

Method: the hedged betting confidence sequence of Waudby-Smith & Ramdas, "Estimating means of bounded random
variables by betting", JRSS-B 86(1), 2024 (arXiv 2010.09686), section 4, with their predictable plug-in bets.
For a candidate drop c, a gambler bets on the sign of Y_j(c) = D_j - c W_j round after round:

- a round j holds one item of every task of the measure (same documents for the cell and its reference, drawn
  in a fixed seeded order), D_j = mean over those tasks of (reference score - cell score), W_j = 1 for an
  absolute drop, W_j = mean of the reference's scores for a relative one (drop = E[D] / E[W]);
- under "the true drop is c", E[Y_j(c)] = 0 and each wealth K+ = prod(1 + l+ Y), K- = prod(1 - l- Y), with bets
  l chosen from earlier rounds only, is a non-negative martingale; so is K = (K+ + K-) / 2, and by Ville's
  inequality P(K_t(c) >= 1/alpha for some t) <= alpha;
- the confidence sequence at round t is {c : K_s(c) < 1/alpha for every s <= t} (the running intersection,
  also valid): whatever rule decides when to look and when to stop, the true drop lies outside it at any time
  with probability at most alpha. A naive fixed-n interval recomputed after each batch has no such guarantee
  (tests/unit/decide/test_confseq.py simulates both).

Scores must lie in [0, 1] (accuracies, exact match: the per-item metrics dqbench keeps). Rounds are i.i.d.
draws from the tasks' document populations (items are drawn in a random order; the population is the usual
lm-eval view of a task's documents as a sample). Pure numpy, no I/O: the evaluate stage, the runner and the
advisor all read the same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID_STEP = 0.0005  # resolution of the candidate drops (a twentieth of a point / of a percent)
BET_CAP = 0.5  # |bet| x range <= 1/2 keeps every factor of the wealth >= 1/2 (WSR's truncation c = 1/2)


@dataclass(frozen=True)
class DropInterval:
    """The confidence sequence after `rounds` rounds: every drop in [lo, hi] is still possible at level
    1 - alpha (None, None: no round yet). `point` is the plain estimate (sum D / sum W)."""

    rounds: int
    point: float | None
    lo: float | None
    hi: float | None
    alpha: float
    relative: bool

    def verdict(self, limit: float) -> str:
        """`within` (the whole interval at or below the limit), `beyond` (wholly above) or `undecided`."""
        if self.lo is None or self.hi is None:
            return "undecided"
        if self.hi <= limit + 1e-12:
            return "within"
        if self.lo > limit + 1e-12:
            return "beyond"
        return "undecided"


def _bets(y: np.ndarray, alpha: float, cap: np.ndarray) -> np.ndarray:
    """Predictable plug-in bets (WSR 2024, eq. 26), one row per candidate: bet j uses rounds < j only.
    y: [candidates, rounds]; cap: [candidates] the largest bet allowed."""
    n = y.shape[1]
    t = np.arange(1, n + 1, dtype=float)
    # running mean and variance estimates with a prior pseudo-round (mean 0, variance 1/4), shifted by one
    # round so that bet j sees only rounds 1..j-1
    csum = np.cumsum(y, axis=1)
    mu = np.concatenate([np.zeros((y.shape[0], 1)), csum / (t + 1)], axis=1)[:, :-1]  # mean before round j
    dev2 = (y - mu) ** 2
    var = (0.25 + np.cumsum(dev2, axis=1)) / (t + 1)
    var_prev = np.concatenate([np.full((y.shape[0], 1), 0.25), var[:, :-1]], axis=1)
    lam = np.sqrt(2 * math.log(2 / alpha) / (var_prev * t * np.log(t + 1)))
    bets: np.ndarray = np.minimum(lam, cap[:, None])
    return bets


def log_wealth(d: np.ndarray, w: np.ndarray, candidates: np.ndarray, alpha: float) -> np.ndarray:
    """log K_t(c) of the hedged gambler, [candidates, rounds]: c is rejected at round t once it reaches
    log(1/alpha). d, w as in drop_interval (w all ones for an absolute drop)."""
    y = d[None, :] - candidates[:, None] * w[None, :]
    # Y(c) = D - c W lies in [-1 - max(c, 0), 1 + max(-c, 0)] (D in [-1, 1], W in [0, 1]): cap each side's
    # bet so that one round can at most halve the wealth
    cap_up = BET_CAP / (1.0 + np.maximum(candidates, 0.0))  # K+ loses when Y < 0
    cap_down = BET_CAP / (1.0 + np.maximum(-candidates, 0.0))  # K- loses when Y > 0
    log_up = np.cumsum(np.log1p(_bets(y, alpha, cap_up) * y), axis=1)
    log_down = np.cumsum(np.log1p(-_bets(-y, alpha, cap_down) * y), axis=1)
    out: np.ndarray = np.logaddexp(log_up, log_down) - math.log(2)
    return out


def drop_interval(
    d: np.ndarray,
    w: np.ndarray | None,
    alpha: float,
    *,
    lo: float = -1.0,
    hi: float = 1.0,
    extra: tuple[float, ...] = (),
) -> DropInterval:
    """The confidence sequence of the drop after len(d) rounds.

    d: per-round mean of (reference - cell) over the measure's tasks, each in [-1, 1];
    w: per-round mean of the reference's scores (relative drop), or None (absolute drop, in score units);
    [lo, hi]: the candidate drops searched (a grid of GRID_STEP); `extra`: candidates that must be tested
    exactly (the limit itself, so a verdict never hangs on the grid)."""
    return interval_path(d, w, alpha, [len(d)], lo=lo, hi=hi, extra=extra)[0]


def interval_path(
    d: np.ndarray,
    w: np.ndarray | None,
    alpha: float,
    looks: list[int],
    *,
    lo: float = -1.0,
    hi: float = 1.0,
    extra: tuple[float, ...] = (),
) -> list[DropInterval]:
    """The confidence sequence at each look (a number of rounds), from one pass over the rounds: the bets
    are predictable, so the wealth after k rounds is the same whether or not later rounds exist."""
    d = np.asarray(d, dtype=float)
    relative = w is not None
    n = len(d)
    wv = np.ones(n) if w is None else np.asarray(w, dtype=float)
    grid = np.unique(
        np.round(np.concatenate([np.arange(lo, hi + GRID_STEP / 2, GRID_STEP), np.asarray(extra, float)]), 9)
    )
    if n:
        crossed = log_wealth(d, wv, grid, alpha) >= math.log(1 / alpha)
        # the round (1-based) at which each candidate is first rejected; n + 1: never
        first = np.where(crossed.any(axis=1), crossed.argmax(axis=1) + 1, n + 1)
    out = []
    for k in looks:
        k = min(int(k), n)
        if k <= 0:
            out.append(DropInterval(0, None, None, None, alpha, relative))
            continue
        wsum = wv[:k].sum()
        point = float(d[:k].sum() / wsum) if wsum > 0 else None
        kept = grid[first > k]  # not rejected at any round up to k: the running intersection
        if kept.size == 0:  # every candidate rejected: the drop lies outside [lo, hi]; report the nearer edge
            edge = lo if (point is not None and point < lo) else hi
            out.append(DropInterval(k, point, edge, edge, alpha, relative))
        else:
            out.append(DropInterval(k, point, float(kept.min()), float(kept.max()), alpha, relative))
    return out


def naive_interval(d: np.ndarray, w: np.ndarray | None, z: float = 1.959964) -> tuple[float, float]:
    """The fixed-n normal 95 % interval of the drop, as if the number of rounds had been fixed in advance
    (delta method for a relative drop). Valid for one look only: kept to show, by simulation, what checking
    it after every batch does to the error rate."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if w is None:
        m, s = d.mean(), d.std(ddof=1) / math.sqrt(n) if n > 1 else float("inf")
        return float(m - z * s), float(m + z * s)
    wv = np.asarray(w, dtype=float)
    r = d.sum() / wv.sum()
    resid = d - r * wv
    s = resid.std(ddof=1) / (math.sqrt(n) * wv.mean()) if n > 1 else float("inf")
    return float(r - z * s), float(r + z * s)
