"""The group-sequential design (harness/decide/groupseq.py): its boundaries against published values, and its error
rate under the planned looks, futility stop included, shown by simulation on paired 0/1 items with a known drop
(the generator of test_confseq.py: a reference right with probability p, a cell flipping answers so that
E[ref - cell] is the drop). A false verdict at the limit is any decided one; its rate over all looks must stay at
or below the stated error rate, also where the flips go one way only and are rare (the spread is then estimated
from very few disagreements: the case PSEUDO_DISCORDANT guards)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.decide import groupseq
from harness.decide.sequential import Design, replay
from harness.spec.decide import Decide
from tests.unit.decide.test_confseq import paired

ALPHA = 0.05
REPS = 1000


@pytest.fixture(autouse=True)
def narrow_grid(monkeypatch):
    """Candidate drops within 15 points of the limits used here (a verdict depends only on which side of the limit
    the interval lies): the simulation runs ~10^4 looks."""
    import harness.decide.sequential as sequential

    monkeypatch.setattr(sequential, "RELATIVE_RANGE", (-0.15, 0.35))
    monkeypatch.setattr(sequential, "ABSOLUTE_RANGE", (-0.15, 0.35))


def test_boundaries_are_the_published_ones():
    # Hwang-Shih-DeCani gamma -4, two-sided 5 % (2.5 % a side), equally spaced: gsDesign's default design (k=3:
    # 3.01, 2.55, 2.00; k=5: 3.25, 2.99, 2.69, 2.37, 2.03)
    assert groupseq.boundaries(ALPHA, (1.0,)) == pytest.approx((1.959964,), abs=1e-4)
    assert groupseq.boundaries(ALPHA, (1 / 3, 2 / 3, 1.0)) == pytest.approx((3.0107, 2.5465, 1.9992), abs=2e-3)
    five = groupseq.boundaries(ALPHA, (0.2, 0.4, 0.6, 0.8, 1.0))
    assert five == pytest.approx((3.2527, 2.9860, 2.6917, 2.3737, 2.0253), abs=2e-3)
    # the last boundary stays near the fixed-n 1.96 however many looks: the full-budget verdict is ~ the fixed-n one
    assert groupseq.boundaries(ALPHA, tuple(k / 20 for k in range(1, 21)))[-1] < 2.12
    with pytest.raises(ValueError, match="increase"):
        groupseq.boundaries(ALPHA, (0.5, 0.5))


def test_a_look_off_the_plan_gets_its_own_boundary_from_the_same_spending():
    design = Design("group-sequential", ALPHA, 0.05, 50, 300)
    plan = groupseq.boundaries(ALPHA, groupseq.fractions_of(design.looks, 300))
    assert design.boundary([50, 100]) == plan[1]
    off = design.boundary([50, 100, 120])  # the reference's items ended at 120
    assert plan[2] < off < plan[1]  # between its neighbours' boundaries: less spent than at 150 items


def first_verdict(d: np.ndarray, w: np.ndarray | None, limit: float, batch: int, futility: bool) -> tuple[str, int]:
    out = replay(d, w, ALPHA, limit, batch, len(d), method="group-sequential")
    if out.stop == "futile" and not futility:  # the same design without its futility stop
        saved = groupseq.FUTILITY_POWER
        groupseq.FUTILITY_POWER = 0.0
        try:
            out = replay(d, w, ALPHA, limit, batch, len(d), method="group-sequential")
        finally:
            groupseq.FUTILITY_POWER = saved
    return out.verdict, out.items


@pytest.mark.parametrize(
    "relative,noise,batch,n",
    [(True, 0.1, 50, 300), (False, 0.1, 20, 400), (True, 0.0, 50, 300), (True, 0.0, 10, 200)],
    ids=["relative-6-looks", "absolute-20-looks", "one-way-flips", "one-way-flips-small-looks"],
)
def test_at_the_limit_no_verdict_is_wrong_more_often_than_the_error_rate(relative, noise, batch, n):
    rng = np.random.default_rng(7)
    p, limit = 0.6, 0.05
    true_abs = limit * p if relative else limit
    wrong = {True: 0, False: 0}
    for _ in range(REPS):
        r, c = paired(rng, n, p, true_abs, noise=noise)
        w = r if relative else None
        for fut in (True, False):
            wrong[fut] += first_verdict(r - c, w, limit, batch, fut)[0] != "undecided"
    margin = 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)
    assert wrong[False] / REPS <= ALPHA + margin, wrong  # the design alone
    assert wrong[True] <= wrong[False]  # non-binding futility only takes verdicts away


@pytest.mark.parametrize("true_drop,right", [(0.0, "within"), (0.15, "beyond")], ids=["no-drop", "thrice-the-limit"])
def test_off_the_limit_it_decides_the_right_side_more_often_than_the_confidence_sequence(true_drop, right):
    rng = np.random.default_rng(3)
    limit, p = 0.05, 0.6
    gs = cs = wrong = 0
    for _ in range(100):
        r, c = paired(rng, 300, p, true_drop * p)
        v, _ = first_verdict(r - c, r, limit, 50, True)
        gs += v == right
        wrong += v not in (right, "undecided")
        cs += replay(r - c, r, ALPHA, limit, 50, 300, method="confidence-sequence").verdict == right
    assert wrong == 0 and gs > cs, (gs, cs)


def test_a_cell_identical_to_its_reference_is_not_stopped_as_futile_and_ends_within():
    # no disagreement at all: the spread is the pseudo item's alone, which the last look divides by N, not sqrt(N)
    r = (np.arange(300) % 2).astype(float)
    out = replay(np.zeros(300), r, ALPHA, 0.05, 50, 300, method="group-sequential")
    assert out.verdict == "within" and out.stop == "within"
    assert not any(lk.lo is not None and lk.lo == lk.hi for lk in out.looks)  # never a zero-width interval


def test_a_drop_on_the_limit_with_a_wide_spread_stops_futile_before_the_budget():
    rng = np.random.default_rng(11)
    stops = []
    for _ in range(50):
        r, c = paired(rng, 300, 0.6, 0.0, noise=0.3)  # no drop, many flips, a 1 % limit: hopeless at 300 items
        stops.append(replay(r - c, r, ALPHA, 0.01, 50, 300, method="group-sequential"))
    futile = [o for o in stops if o.stop == "futile"]
    assert len(futile) > 40 and all(o.items < 300 and o.verdict == "undecided" for o in futile)
    assert all(o.stop in ("futile", "budget") or o.verdict != "undecided" for o in stops)


def test_more_items_estimates_where_the_last_look_would_decide():
    design = Design("group-sequential", ALPHA, 0.05, 50, 300)
    d = np.array([0.0, 1.0] * 50)  # a 50 % absolute drop measured on 100 items: already far beyond
    assert design.more_items(d, None) == 1
    r = (np.arange(200) % 2).astype(float)
    near = np.zeros(200)
    near[:2] = r[:2]  # 1 of 100 right answers lost: a 1 % drop against a 5 % limit, far from decided yet
    more = design.more_items(near, r)
    assert more is not None and more > 0


def test_a_group_sequential_design_refuses_more_looks_than_it_can_plan():
    with pytest.raises(ValueError, match=r"batch_items 1: .* 1000 looks .* raise batch_items to at least 5"):
        Decide(max_drop="5%", max_items=1000, batch_items=1)
    assert Decide(max_drop="5%", max_items=1000, batch_items=1, method="confidence-sequence").batch_items == 1
    assert Decide(max_drop="5%").method == "group-sequential"
