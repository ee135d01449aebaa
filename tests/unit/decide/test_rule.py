"""The sequential procedure's pieces (harness/decide/sequential.py, harness/decide/order.item_sequence): the
measure's items interleaved by a seeded draw of tasks, paired with the reference item by item, the look
schedule, stopping at the first decided look, and the projection of items that would decide an undecided drop."""

from __future__ import annotations

from collections import Counter

import numpy as np

from harness.decide.order import item_sequence
from harness.decide.sequential import look_schedule, more_items, paired_items, replay, scored_items

ORDERS = {"a": [(None, 3), (None, 1), (None, 2)], "b": [(None, 9), (None, 8), (None, 7)]}


def test_the_sequence_draws_a_task_at_random_and_takes_its_next_item():
    seq = item_sequence(ORDERS, seed=0, budget=6)
    assert len(seq) <= 6 and seq == item_sequence(ORDERS, seed=0, budget=6)
    for t in ("a", "b"):  # each task's items come in its own order
        mine = [k for task, k in seq if task == t]
        assert mine == ORDERS[t][: len(mine)]
    big = {"a": [(None, i) for i in range(1000)], "b": [(None, i) for i in range(1000)], "c": [(None, 0)]}
    assert len(item_sequence(big, 0, 500)) < 20  # ends where a drawn task (c) has no item left
    both = {k: v for k, v in big.items() if k != "c"}
    counts = Counter(t for t, _ in item_sequence(both, 0, 1000))
    assert counts["a"] + counts["b"] == 1000 and 400 < counts["a"] < 600  # about even, at random
    assert item_sequence(both, 1, 50) != item_sequence(both, 0, 50)


def test_items_pair_step_by_step_with_the_reference():
    seq = [("a", (None, 3)), ("b", (None, 9)), ("a", (None, 1)), ("b", (None, 8))]
    ref = {"a": {(None, 3): 1.0, (None, 1): 1.0}, "b": {(None, 9): 1.0, (None, 8): 0.0}}
    cell = {"a": {(None, 3): 0.0}, "b": {(None, 9): 1.0, (None, 8): 1.0}}
    d, w = paired_items(seq, cell, ref, relative=True)
    assert d.tolist() == [1.0, 0.0] and w.tolist() == [1.0, 1.0]  # step 3 (a's second) is not scored yet
    assert paired_items(seq, cell, ref, relative=False)[1] is None
    assert paired_items(seq, cell, ref, True, upto=1)[0].tolist() == [1.0]
    assert scored_items(seq, cell) == 2 and scored_items(seq, ref) == 4
    assert len(paired_items(seq, cell, None, True)[0]) == 0  # no reference, no pairs


def test_looks_fall_every_batch_and_at_the_cap():
    assert look_schedule(20, 60) == [20, 40, 60]
    assert look_schedule(20, 50) == [20, 40, 50]
    assert look_schedule(20, 7) == [7] and look_schedule(20, 0) == []


def test_replay_stops_at_the_first_decided_look():
    rng = np.random.default_rng(0)
    ref = (rng.random(400) < 0.7).astype(float)
    bad = ref * (rng.random(400) < 0.3)  # loses most of what the reference gets right
    out = replay(ref - bad, ref, 0.05, 0.05, 20, 400)
    assert out.verdict == "beyond" and out.stop == "beyond" and out.items < 400
    assert [lk.items for lk in out.looks] == list(range(20, out.items + 1, 20))
    assert out.looks[-1].lo > 0.05 and all(lk.lo <= 0.05 for lk in out.looks[:-1])
    same = replay(np.zeros(100), ref[:100], 0.05, 0.05, 20, 100, exhausted="reference_exhausted")
    assert same.verdict in ("undecided", "within")
    if same.verdict == "undecided":
        assert same.stop == "reference_exhausted" and same.items == 100


def test_more_items_grows_as_the_drop_nears_the_limit_and_is_none_on_it():
    rng = np.random.default_rng(1)
    ref = (rng.random(60) < 0.6).astype(float)
    flips = rng.random(60) < 0.1
    cell = np.where(flips, 1 - ref, ref)
    d = ref - cell
    far = more_items(d, None, 0.05, limit=0.3)
    near = more_items(d, None, 0.05, limit=float(d.mean()) + 0.05)
    assert far is not None and near is not None and far < near
    assert more_items(d, None, 0.05, limit=float(d.mean())) is None  # on the limit: no count decides it
    assert more_items(d[:1], None, 0.05, 0.05) is None


def test_a_projection_is_of_the_order_of_what_the_procedure_needs():
    """Undecided after 150 items of a drop near the limit, the projected total is within a factor of about two
    of the items the procedure needs on fresh data from the same model pair (the median over simulations)."""
    p, drop, n0, batch = 0.6, 0.12, 150, 25

    def pair(rng, n):
        r = (rng.random(n) < p).astype(float)
        return r, r * (rng.random(n) >= drop / p)

    rng = np.random.default_rng(0)
    needed = [replay(r - c, None, 0.05, 0.05, batch, 1500).items for r, c in (pair(rng, 1500) for _ in range(30))]
    median = float(np.median(needed))
    for seed in range(3):
        r, c = pair(np.random.default_rng(100 + seed), n0)
        m = more_items(r - c, None, 0.05, 0.05)
        assert m is not None and 0.5 * median <= n0 + m <= 2.5 * median, (n0 + m, median)
