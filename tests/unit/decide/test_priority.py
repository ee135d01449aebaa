"""`--until-decided`'s choices (harness/decide/priority.py): exact memory exclusions first, references first,
the answer so far, the bar a cell's measured objective must clear, and the predictor hook."""

from __future__ import annotations

from harness.decide import priority
from harness.decide.priority import Prediction, cannot_beat, exclusion, objective_value, run_order, winner
from harness.plan import plan_matrix
from harness.result import CellResult, Level, Memory, Perf, Quality
from harness.spec import parse_matrix
from tests.fakes.decisions import decision


def plan(base_matrix, settings, **decide):
    base_matrix["decide"] = {"max_drop": "5%", "max_items": 20, **decide}
    return plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")


def result(cell, tok_s, verdict=None, lo=None, hi=None):
    dec = decision(reference=cell.parent_id, verdict=verdict, stop=verdict or "reference", lo=lo, hi=hi)
    levels = [
        Level(profile="synchronous", level=1, requests=3, completed=3, failed=0, output_tok_s=tok_s),
        Level(profile="concurrency", level=16, requests=16, completed=16, failed=0, output_tok_s=10 * tok_s),
    ]
    return CellResult(
        cell_id=cell.cell_id,
        matrix="m",
        label=cell.label,
        status="done",
        plan={},
        perf=Perf(levels=levels),
        memory=Memory(peak_gib=3.0),
        quality=Quality(decision=dec),
    )


def test_cells_over_memory_never_run_but_a_reference_they_need_does(base_matrix, settings):
    p = plan(base_matrix, settings, memory_gib=3.6)  # the bf16 reference plans 3.65 GiB, its int cells less
    ref = next(c for c in p.cells if c.parent_id is None)
    assert exclusion(ref, p.cells[0].decide) is not None
    runnable = [c for c in p.cells if c.status != "infeasible"]
    order, never = run_order(runnable, p.cells[0].decide)
    assert order[0] is ref and ref.cell_id not in never  # its cells are measured against its items
    assert winner(runnable, {ref.cell_id: result(ref, 100.0)}, p.cells[0].decide) is None  # it cannot be the answer
    p = plan(base_matrix, settings, memory_gib=0.1)  # nothing fits: not even the reference runs
    order, never = run_order([c for c in p.cells if c.status != "infeasible"], p.cells[0].decide)
    assert ref.cell_id not in [c.cell_id for c in order] and len(never) == len(order) + len(never)


def test_the_answer_is_the_best_measured_objective_among_cells_decided_within(base_matrix, settings):
    p = plan(base_matrix, settings)
    cells = [c for c in p.cells if c.status != "infeasible"]
    ref, a, b = cells[0], cells[1], cells[2]
    d = p.cells[0].decide
    res = {ref.cell_id: result(ref, 20.0), a.cell_id: result(a, 30.0, "beyond", 0.1, 0.3)}
    assert winner(cells, res, d).cell_id == ref.cell_id  # a reference's drop is 0 by definition
    res[b.cell_id] = result(b, 25.0, "within", -0.02, 0.04)
    w = winner(cells, res, d)
    assert w.cell_id == b.cell_id and w.value == 25.0  # a is faster but beyond: not the answer
    bar = w.bar()
    assert cannot_beat(objective_value(res[ref.cell_id], "throughput"), bar)
    assert not cannot_beat(objective_value(res[a.cell_id], "throughput"), bar)
    assert not cannot_beat(25.0, bar)  # a tie may still win (on the drop)
    assert objective_value(res[a.cell_id], "memory") == 3.0
    assert objective_value(res[a.cell_id], "latency") is None  # no TTFT measured in this fixture


def test_a_predictor_with_a_bound_settles_cells_a_heuristic_only_orders(base_matrix, settings, monkeypatch):
    p = plan(base_matrix, settings)
    cells = [c for c in p.cells if c.status != "infeasible"]
    order, _ = run_order(cells, p.cells[0].decide)
    assert order[0].parent_id is None
    bits = [c.estimate.bits_per_weight for c in order[1:]]
    assert bits == sorted(bits)  # fewer weight bytes first for throughput
    best = priority.Winner("x", "x", 50.0, "throughput")
    assert priority.settled_without(order[1], best, "throughput") is None  # the heuristic gives no bound
    monkeypatch.setattr(priority, "PREDICTORS", [lambda c, o: Prediction(40.0, 45.0, "test model")])
    assert "cannot beat" in priority.settled_without(order[1], best, "throughput")
