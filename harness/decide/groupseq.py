"""Repeated confidence intervals of a group-sequential design for a paired quality drop, and its futility rule:
the sequential evaluation's default procedure when the item budget, and so every look, is fixed before the
first item is scored (harness/decide/sequential.py picks it by `decide.method`).

Method (`decide.method: group-sequential`):
- the looks are planned: after every `batch_items` items up to N = min(max_items, the measure's documents), at
  information fractions t_k = n_k / N (equal variance per item, so information is proportional to items);
- the two-sided boundaries c_1..c_K spend the error rate alpha with a spending function (Lan & DeMets,
  Biometrika 70(3), 1983), Hwang-Shih-DeCani's alpha (1 - e^{-g t}) / (1 - e^{-g}) at g = -4 (Statistics in
  Medicine 9, 1990: close to O'Brien-Fleming's overall; see SPENDING_GAMMA), computed by
  the recursive numerical integration of Armitage, McPherson & Rowe (JRSS-A 132, 1969) over the Brownian
  motion of the standardised drop (`boundaries`);
- the interval at look k is the repeated confidence interval  point +- c_k x se  (Jennison & Turnbull,
  "Repeated confidence intervals for group sequential clinical trials", Controlled Clinical Trials 5, 1984;
  their book "Group Sequential Methods", 2000, ch. 9): all K intervals hold the true drop together with
  probability >= 1 - alpha, so the verdict at whatever look a run stops, and the stored interval read later
  against another limit, keep the error rate. This spending keeps the last boundary close to the fixed-n 1.96
  (2.03 for 6 looks): with all N items the verdict is nearly the fixed-n one, which is what a user compares it
  with; early looks decide only clear cases;
- the interval is the set of candidate drops c a two-sided test keeps at the look's boundary: z(c) =
  mean(D - c W) / se, the variance the observed one or, where larger, the least any pairing with drop c can
  have (a score test's variance under the hypothesis, `z_scores`): paired 0/1 items with few flips are skewed,
  and the plain (Wald) variance, small exactly when the drop is underestimated, would declare "within" too often
  (the simulation shows 7-10 % at a stated 5 % without it);
- futility (`futile`): at a look before the last, the conditional power of reaching either verdict by the last
  look, with the drop and spread as measured so far ("current trend", Lan, Simon & Halperin, Communications in
  Statistics C 1(3), 1982; Jennison & Turnbull ch. 10), is below FUTILITY_POWER: the cell stops *undecided*
  and spends no more items. The rule is non-binding: it can only turn a verdict into *undecided*, so the error
  rate of the verdicts given stays <= alpha (tests/unit/decide/test_groupseq.py simulates it).

Valid for the planned looks; a later run with a larger budget replays every item from the first under the new
design (its own boundaries), so its verdict is that design's and keeps its error rate. The confidence sequence
(harness/decide/confseq.py) needs no planned looks and stays available (`decide.method: confidence-sequence`).
The normal approximation needs items: with 0/1 scores the first look should hold some tens of items
(`batch_items`). Pure numpy/scipy.special, no I/O.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from harness.decide.confseq import DropInterval

NORMAL = NormalDist()
GRID = 1201  # points of the numerical integration over the continuation region (boundary error < 1e-4)
MAX_C = 12.0  # a look whose spending is ~0 cannot decide: its boundary is capped here
# Hwang-Shih-DeCani's gamma: -4 spends like O'Brien-Fleming overall (the last boundary 2.03 for 6 looks at 5 %,
# against the fixed-n 1.96) but less sparingly at the first looks (3.33 against Lan-DeMets O'Brien-Fleming's
# 5.37 for the first of 6): a student 60 % below its teacher is decided after 50 items, as it should be
SPENDING_GAMMA = -4.0
CONTINUITY = 0.5  # Yates's half step on the sum of paired 0/1 differences (see z_scores)
FUTILITY_POWER = 0.10  # stop undecided when the chance of a verdict by the last look is below this


def spent(alpha: float, t: float) -> float:
    """The error rate spent by information fraction t, both sides together: Hwang-Shih-DeCani's family
    alpha (1 - exp(-g t)) / (1 - exp(-g)) at g = SPENDING_GAMMA."""
    if t <= 0:
        return 0.0
    g = SPENDING_GAMMA
    return alpha * (1.0 - math.exp(-g * min(t, 1.0))) / (1.0 - math.exp(-g))


def _crossing(b: float, sd: float, prior: tuple[np.ndarray, np.ndarray] | None) -> float:
    """P(|S_k| >= b, and inside every earlier boundary): prior = (grid, density x weights) of S_{k-1} on the
    earlier continuation region (None at the first look, S_1 ~ N(0, sd^2)); sd^2 = t_k - t_{k-1}."""
    from scipy.special import ndtr  # vectorised Phi; scipy comes with lm-eval's stack

    if prior is None:
        return float(2.0 * ndtr(-b / sd))
    grid, mass = prior
    return float(np.sum(mass * (ndtr((-b - grid) / sd) + ndtr((grid - b) / sd))))


@lru_cache(maxsize=512)
def boundaries(alpha: float, fractions: tuple[float, ...]) -> tuple[float, ...]:
    """Two-sided boundaries c_k (standardised scale) of the looks at increasing information fractions: under no
    drift, P(|Z_k| >= c_k at some look) = the spending at the last fraction (alpha when it is 1)."""
    out: list[float] = []
    prev_t = 0.0
    prior: tuple[np.ndarray, np.ndarray] | None = None  # (grid, density x weights) of S at the look before
    for t in fractions:
        if not 0 < t <= 1 + 1e-12 or t <= prev_t:
            raise ValueError(f"information fractions must increase in (0, 1]: {fractions}")
        target = spent(alpha, t) - spent(alpha, prev_t)
        sd = math.sqrt(t - prev_t)

        hi_b = MAX_C * math.sqrt(t)
        if target <= 0 or _crossing(hi_b, sd, prior) >= target:
            b = hi_b
        else:
            lo_b = 0.0
            for _ in range(60):  # the crossing chance falls as b rises
                mid = (lo_b + hi_b) / 2
                if _crossing(mid, sd, prior) > target:
                    lo_b = mid
                else:
                    hi_b = mid
            b = (lo_b + hi_b) / 2
        out.append(b / math.sqrt(t))
        # the density of S_k on the continuation region (-b, b), for the next look
        new_grid = np.linspace(-b, b, GRID)
        h = new_grid[1] - new_grid[0]
        new_w = np.full(GRID, h)
        new_w[[0, -1]] = h / 2
        if prior is None:
            new_dens = np.exp(-0.5 * (new_grid / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        else:
            grid, mass = prior
            kern = np.exp(-0.5 * ((new_grid[:, None] - grid[None, :]) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
            new_dens = kern @ mass
        prior, prev_t = (new_grid, new_dens * new_w), t
    return tuple(out)


def fractions_of(looks: list[int], planned: int) -> tuple[float, ...]:
    """Information fractions of looks (items) of a design planned for `planned` items."""
    return tuple(min(1.0, k / planned) for k in looks)


def _sums(d: np.ndarray, w: np.ndarray | None) -> tuple[int, float, float, float, float, float]:
    """(n, sum D, sum W, sum D^2, sum D W, sum W^2): every statistic below is a function of these (W = 1 for an
    absolute drop), so a look costs O(candidates), not O(candidates x items)."""
    wv = np.ones(len(d)) if w is None else np.asarray(w, float)
    return len(d), float(d.sum()), float(wv.sum()), float(d @ d), float(d @ wv), float(wv @ wv)


def _null_floor(c: np.ndarray, pbar: float, relative: bool) -> np.ndarray:
    """The smallest per-item variance of D - c W any pairing with drop c can have: the cell's flips all one way
    (|drop| of the items flipped, none back), p = the reference's mean score. Absolute: |c| (1 - |c|); relative,
    c >= 0: c^2 (p - cp) + (1 - c)^2 cp; c < 0: c^2 p - cp."""
    if not relative:
        a = np.clip(np.abs(c), 0.0, 1.0)
        out: np.ndarray = a * (1 - a)
        return out
    delta = np.abs(c) * pbar
    return np.where(c >= 0, c**2 * np.maximum(pbar - delta, 0.0) + (1 - c) ** 2 * delta, c**2 * pbar + delta)


def z_scores(d: np.ndarray, w: np.ndarray | None, cands: np.ndarray) -> np.ndarray:
    """The test statistic of "the drop is c" for each candidate c: z = mean(D - c W) / sqrt(v / n), with v the
    observed variance of D - c W or, where larger, the variance the least variable pairing with drop c would
    have (`_null_floor`). The floor is what a score test's variance under the hypothesis gives (Tango,
    Statistics in Medicine 17, 1998, for paired proportions): with few flips observed, the plain (Wald)
    variance is small exactly when the drop is underestimated, and "within" would be declared too often."""
    n, sd, sw, sdd, sdw, sww = _sums(d, w)
    m = (sd - cands * sw) / n
    v_obs = np.maximum((sdd - 2 * cands * sdw + cands**2 * sww) / n - m**2, 0.0)
    v = np.maximum(v_obs, _null_floor(cands, sw / n, w is not None))
    # continuity correction: the sum of D moves in steps of one item, half a step is taken off |sum(D - c W)|
    m = np.sign(m) * np.maximum(np.abs(m) - CONTINUITY / n, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(v > 0, m / np.sqrt(v / n), np.where(m == 0, 0.0, np.sign(m) * np.inf))
    out: np.ndarray = z
    return out


def point_of(d: np.ndarray, w: np.ndarray | None) -> float | None:
    """sum D / sum W (relative) or mean D (absolute); None without items."""
    wsum = len(d) if w is None else float(np.sum(w))
    return float(d.sum()) / wsum if len(d) and wsum > 0 else None


def repeated_interval(d: np.ndarray, w: np.ndarray | None, alpha: float, c: float, grid: np.ndarray) -> DropInterval:
    """The repeated confidence interval after len(d) items: the candidate drops of `grid` whose |z| stays below
    this look's boundary c (their range; the limit should be in the grid so the verdict never hangs on it)."""
    point = point_of(d, w)
    if point is None:
        return DropInterval(len(d), point, None, None, alpha, w is not None)
    kept = grid[np.abs(z_scores(d, w, grid)) < c]
    if kept.size == 0:  # every candidate rejected: the drop lies outside the grid; report the nearer edge
        edge = float(grid[0] if point < grid[0] else grid[-1])
        return DropInterval(len(d), point, edge, edge, alpha, w is not None)
    return DropInterval(len(d), point, float(kept.min()), float(kept.max()), alpha, w is not None)


def conditional_power(d: np.ndarray, w: np.ndarray | None, limit: float, planned: int, c_last: float) -> float:
    """The chance that the last look (at `planned` items) decides, either way, if the items to come behave as
    those so far ("current trend"): the limit's statistic as a B-value, B(t) = z sqrt(t), drifts at z / sqrt(t)
    per unit of information, so B(1) ~ N(z / sqrt(t), 1 - t), and the last look decides when |B(1)| >= c_last."""
    n = len(d)
    if n == 0 or n >= planned:
        return 0.0
    z = float(z_scores(d, w, np.array([limit]))[0])
    if math.isinf(z):
        return 1.0
    t = n / planned
    mean, sd = z / math.sqrt(t), math.sqrt(1 - t)
    return NORMAL.cdf((-c_last - mean) / sd) + 1 - NORMAL.cdf((c_last - mean) / sd)


def futile(d: np.ndarray, w: np.ndarray | None, limit: float, planned: int, c_last: float) -> bool:
    """Whether a look before the last (len(d) < planned items) may stop undecided: a verdict by the last look
    is unlikely (conditional power below FUTILITY_POWER)."""
    return len(d) < planned and conditional_power(d, w, limit, planned, c_last) < FUTILITY_POWER


def items_to_decide(d: np.ndarray, w: np.ndarray | None, limit: float, c_last: float) -> int | None:
    """≈ items in all at which a last look would decide, if the drop and spread stay as measured: the limit's
    statistic grows as sqrt(n), so n (c_last / |z|)^2. None: no items, or the estimate sits on the limit."""
    if not len(d):
        return None
    z = float(z_scores(d, w, np.array([limit]))[0])
    if z == 0 or not math.isfinite(z):
        return None if z == 0 else len(d)
    return int(math.ceil(len(d) * (c_last / abs(z)) ** 2))
