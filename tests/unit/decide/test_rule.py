"""The sequential procedure's pieces (harness/decide/sequential.py): rounds paired across tasks and with the
reference, the look schedule, stopping at the first decided look, and the projection of rounds that would
decide an undecided drop."""

from __future__ import annotations

import numpy as np

from harness.decide.sequential import look_schedule, more_rounds, paired_rounds, replay, scored_rounds

ORDERS = {"a": [(None, 3), (None, 1), (None, 2)], "b": [(None, 9), (None, 8), (None, 7)]}


def test_rounds_pair_the_j_th_item_of_every_task_on_both_sides():
    ref = {"a": {(None, 3): 1.0, (None, 1): 1.0, (None, 2): 0.0}, "b": {(None, 9): 1.0, (None, 8): 0.0, (None, 7): 1.0}}
    cell = {"a": {(None, 3): 0.0, (None, 1): 1.0}, "b": {(None, 9): 1.0, (None, 8): 1.0, (None, 7): 1.0}}
    d, w = paired_rounds(ORDERS, cell, ref, relative=True)
    # round 3 is missing task a's item on the cell's side: rounds stop there
    assert d.tolist() == [0.5, -0.5] and w.tolist() == [1.0, 0.5]
    d, w = paired_rounds(ORDERS, cell, ref, relative=False)
    assert w is None and len(d) == 2
    assert paired_rounds(ORDERS, cell, ref, True, upto=1)[0].tolist() == [0.5]
    assert scored_rounds(ORDERS, cell) == 2 and scored_rounds(ORDERS, ref) == 3
    assert len(paired_rounds(ORDERS, cell, None, True)[0]) == 0  # no reference, no rounds


def test_looks_fall_every_batch_and_at_the_cap():
    assert look_schedule(20, 60) == [20, 40, 60]
    assert look_schedule(20, 50) == [20, 40, 50]
    assert look_schedule(20, 7) == [7] and look_schedule(20, 0) == []


def test_replay_stops_at_the_first_decided_look():
    rng = np.random.default_rng(0)
    ref = (rng.random(400) < 0.7).astype(float)
    bad = ref * (rng.random(400) < 0.3)  # loses most of what the reference gets right
    out = replay(ref - bad, ref, 0.05, 0.05, 20, 400)
    assert out.verdict == "beyond" and out.stop == "beyond" and out.rounds < 400
    assert [lk.rounds for lk in out.looks] == list(range(20, out.rounds + 1, 20))
    assert out.looks[-1].lo > 0.05 and all(lk.lo <= 0.05 for lk in out.looks[:-1])
    same = replay(np.zeros(100), ref[:100], 0.05, 0.05, 20, 100, exhausted="reference_exhausted")
    assert same.verdict in ("undecided", "within")
    if same.verdict == "undecided":
        assert same.stop == "reference_exhausted" and same.rounds == 100


def test_more_rounds_grows_as_the_drop_nears_the_limit_and_is_none_on_it():
    rng = np.random.default_rng(1)
    ref = (rng.random(60) < 0.6).astype(float)
    flips = rng.random(60) < 0.1
    cell = np.where(flips, 1 - ref, ref)
    d = ref - cell
    far = more_rounds(d, None, 0.05, limit=0.3)
    near = more_rounds(d, None, 0.05, limit=float(d.mean()) + 0.05)
    assert far is not None and near is not None and far < near
    assert more_rounds(d, None, 0.05, limit=float(d.mean())) is None  # on the limit: no count decides it
    assert more_rounds(d[:1], None, 0.05, 0.05) is None


def test_a_projection_is_of_the_order_of_what_the_procedure_needs():
    """Undecided after 150 rounds of a drop near the limit, the projected total is within a factor of about two
    of the rounds the procedure needs on fresh data from the same model pair (the median over simulations)."""
    p, drop, n0, batch = 0.6, 0.12, 150, 25

    def pair(rng, n):
        r = (rng.random(n) < p).astype(float)
        return r, r * (rng.random(n) >= drop / p)

    rng = np.random.default_rng(0)
    needed = [replay(r - c, None, 0.05, 0.05, batch, 1500).rounds for r, c in (pair(rng, 1500) for _ in range(30))]
    median = float(np.median(needed))
    for seed in range(3):
        r, c = pair(np.random.default_rng(100 + seed), n0)
        m = more_rounds(r - c, None, 0.05, 0.05)
        assert m is not None and 0.5 * median <= n0 + m <= 2.5 * median, (n0 + m, median)
