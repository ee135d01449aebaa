"""Power before running (harness/plan/power.py): the smallest paired drop each task's items can detect, the
warning against `evaluation.resolve_drop`, and the estimates a stored result brings."""

import copy
import math

import pytest

from harness.errors import SpecError
from harness.plan import plan_matrix
from harness.plan.power import Z_SUM, items_for, mde, plan_power, var_bound
from harness.result import CellResult, Item, Quality, TaskScore
from harness.spec import parse_matrix
from harness.spec.drop import Drop, parse_drop
from harness.store.results import ResultStore

HOST = {"host_id": "h0st000001", "label": "Test CPU"}


def _plan(base_matrix, settings, **evaluation):
    m = copy.deepcopy(base_matrix)
    m["evaluation"].update(evaluation)
    matrix = parse_matrix(m)
    return matrix, plan_matrix(matrix, settings, host="cpu-avx512")


def _by_task(rows):
    return {r.task: r for r in rows}


def test_mde_formula_against_a_hand_computed_value():
    # z_0.975 = 1.959964, z_0.80 = 0.841621; 570 items (all of ARC-Easy's validation) at the bound 2p(1-p) = 0.5:
    # 2.801585 * sqrt(0.5 / 570) = 2.801585 * 0.0296174 = 0.0829757
    assert pytest.approx(2.801585, abs=1e-6) == Z_SUM
    assert mde(0.5, 570) == pytest.approx(0.0829757, abs=1e-6)
    # resolving 1 point at that variance: 2.801585^2 * 0.5 / 0.01^2 = 39244.4 -> 39245 items
    assert items_for(0.5, 0.01) == 39245
    assert mde(0.5, items_for(0.5, 0.01)) <= 0.01 < mde(0.5, items_for(0.5, 0.01) - 1)
    # 2p(1-p) is largest at p = 0.5: the assumption before any result is an upper bound for every accuracy
    assert var_bound(0.5) == 0.5 and all(var_bound(p / 100) <= 0.5 for p in range(101))


def test_plan_before_any_result_uses_the_bound_and_skips_perplexity(base_matrix, settings):
    matrix, plan = _plan(base_matrix, settings)
    rows = _by_task(plan_power(plan, matrix.evaluation))
    assert list(rows) == ["dq_pydoc_ppl", "dq_lambada", "dq_arc_easy", "dq_hellaswag"]  # one row each: no result yet
    assert rows["dq_pydoc_ppl"].note == "no per-item accuracy" and rows["dq_pydoc_ppl"].mde_pt is None
    arc = rows["dq_arc_easy"]
    assert (arc.items, arc.task_docs, arc.metric, arc.basis) == (30, 570, "acc", "bound")
    assert arc.mde_pt == pytest.approx(100 * 2.801585 * math.sqrt(0.5 / 30), abs=1e-3)  # 36.17 points
    assert rows["dq_hellaswag"].metric == "acc_norm" and rows["dq_hellaswag"].items == 20
    assert all(r.warning is None and r.resolved is None for r in rows.values())  # no resolve_drop: nothing to warn


def test_unknown_task_size_says_it_needs_the_hub(base_matrix, settings, monkeypatch):
    from harness.evaluate import catalog

    matrix, plan = _plan(base_matrix, settings)
    monkeypatch.setattr(catalog, "leaves", lambda name: None)
    spec = matrix.evaluation.model_copy(update={"tasks": [matrix.evaluation.tasks[0].model_copy(update={"name": "x"})]})
    (row,) = plan_power(plan, spec)
    assert row.note == "unknown (needs the hub)" and row.items is None and row.mde_pt is None


def test_warning_appears_only_when_the_mde_is_larger_than_resolve_drop(base_matrix, settings):
    # 30 items detect 36.2 points, 20 items 44.3: a 40-point drop is resolved by the first, not the second
    matrix, plan = _plan(base_matrix, settings, resolve_drop="40pt")
    rows = _by_task(plan_power(plan, matrix.evaluation))
    assert rows["dq_arc_easy"].resolved is True and rows["dq_arc_easy"].warning is None
    hs = rows["dq_hellaswag"]
    need = items_for(0.5, 0.40)
    assert hs.resolved is False and hs.items_needed == need == 25
    assert hs.warning == (
        "dq_hellaswag: with 20 items the smallest detectable drop is 44.3 pt, larger than resolve_drop 40 pt; "
        f"needs about {need} items: set its limit to {need} or more"
    )
    # relative, before any result: converted at p = 0.5 (2% of 0.5 = 1 point), more items than ARC-Easy has
    matrix, plan = _plan(base_matrix, settings, resolve_drop="2%")
    arc = _by_task(plan_power(plan, matrix.evaluation))["dq_arc_easy"]
    assert arc.resolve_pt == pytest.approx(1.0) and arc.items_needed == 39245
    assert "(2% of p=0.500)" in arc.warning and "more than the task's 570 documents" in arc.warning


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("2x", "expected a relative drop like '2%' (of the reference's score) or absolute accuracy points"),
        ("-1pt", "expected a relative drop like '2%'"),
        (2, "a drop needs its unit: write '2%' (relative) or '2pt'"),
        ("0pt", "greater than 0"),
        ("100%", "below 100%"),
        ("150pt", "at most 100 points"),
    ],
)
def test_resolve_drop_errors_name_the_field_the_value_and_the_fix(base_matrix, value, why):
    m = copy.deepcopy(base_matrix)
    m["evaluation"]["resolve_drop"] = value
    with pytest.raises(SpecError) as exc:
        parse_matrix(m)
    (problem,) = exc.value.problems
    assert problem.startswith(f"evaluation.resolve_drop: got {value!r};") and why in problem, problem


def test_resolve_drop_parses_like_the_advisors_max_drop():
    assert parse_drop("2%") == Drop(0.02, True) and parse_drop(" 1.5 PT ") == Drop(1.5, False)
    assert parse_drop("3 points") == Drop(3.0, False) and str(parse_drop("2.50 %")) == "2.5%"
    assert Drop(0.02, True).points(0.6) == pytest.approx(1.2) and Drop(1.5, False).points(0.6) == 1.5


def test_resolve_drop_changes_no_cell_id(base_matrix, settings):
    _, plain = _plan(base_matrix, settings)
    matrix, with_drop = _plan(base_matrix, settings, resolve_drop="2%")
    assert matrix.evaluation.resolve_drop == "2%"
    assert [c.cell_id for c in with_drop.cells] == [c.cell_id for c in plain.cells]
    # at its default it is left out of every dump (stored plans read as before the field existed)
    assert "resolve_drop" not in plain.cells[0].evaluation.model_dump(mode="json")


def _result(cell_id: str, arc: list[int], host=HOST) -> CellResult:
    items = [Item(doc_id=i, scores={"acc": float(v)}) for i, v in enumerate(arc)]
    return CellResult(
        cell_id=cell_id,
        matrix="smollm2-cpu",
        label=cell_id,
        status="done",
        plan={"cell_id": cell_id},
        host=host,
        quality=Quality(tasks={"dq_arc_easy": TaskScore(items=items)}),
    )


def test_a_stored_reference_and_a_paired_cell_refine_the_estimate(base_matrix, settings, tmp_path):
    matrix, plan = _plan(base_matrix, settings, resolve_drop="10%")
    root = next(c for c in plan.cells if c.parent_id is None)
    child = next(c for c in plan.cells if c.parent_id == root.cell_id and c.status == "planned")
    store = ResultStore(tmp_path / "results")

    def power(host_id=HOST["host_id"]):
        def results(cid):
            return {h: r for h, r in store.hosts_of(cid).items() if r.done}

        return _by_task(plan_power(plan, matrix.evaluation, results, host_id))["dq_arc_easy"]

    ref = [1] * 21 + [0] * 9  # 21 of 30 right: p = 0.7
    store.write(_result(root.cell_id, ref))
    arc = power()
    assert (arc.basis, arc.reference, arc.model) == ("reference", root.cell_id, "smollm2-135m")
    assert arc.p == pytest.approx(0.7) and arc.var_d == pytest.approx(0.42)
    assert arc.mde_pt == pytest.approx(100 * Z_SUM * math.sqrt(0.42 / 30))
    assert arc.resolve_pt == pytest.approx(7.0)  # 10% of the reference's 70%, not of the prior 50%
    assert "reference accuracy p=0.700" in arc.basis_note and "on host" not in arc.basis_note
    # read from another host, the reference's accuracy still serves, and says where it comes from
    assert "on host h0st000001" in power("other00001").basis_note

    # a compressed cell on another host is not paired with it (items differ by ISA in the last digits)
    store.write(_result(child.cell_id, [0] * 30, host={"host_id": "other00001", "label": "Other"}))
    assert power().basis == "reference"
    # on the same host, 3 of 30 items scored apart: discordance 0.1
    store.write(_result(child.cell_id, [0, 0, 0] + ref[3:]))
    arc = power()
    assert (arc.basis, arc.var_d) == ("discordance", pytest.approx(0.1))
    assert arc.mde_pt == pytest.approx(100 * Z_SUM * math.sqrt(0.1 / 30))  # 16.2 points
    assert f"observed discordance 0.100 over 30 paired items (cell {child.cell_id})" in arc.basis_note
    assert arc.items_needed == items_for(0.1, 0.07) and "with 30 items" in arc.warning
    # none scored apart: the rule of three (3/30), not a variance of 0
    store.write(_result(child.cell_id, ref))
    assert power().var_d == pytest.approx(0.1)
    # two cells paired with the reference: the larger discordance (6 of 30 apart) stands for the lineage
    other = next(c for c in plan.cells if c.parent_id == root.cell_id and c.cell_id != child.cell_id)
    store.write(_result(other.cell_id, [0] * 6 + ref[6:]))
    arc = power()
    assert arc.var_d == pytest.approx(0.2) and f"the largest of 2 cells: cell {other.cell_id})" in arc.basis_note


def test_a_group_needs_its_items_through_a_per_subtask_limit(monkeypatch):
    from types import SimpleNamespace

    from harness.evaluate import catalog
    from harness.plan.power import _group_limit

    # subtasks of 10, 50 and 200 documents: a limit of 40 scores 10 + 40 + 40 = 90 items, 39 only 88
    leaves = [SimpleNamespace(name=f"g_{d}", docs=d) for d in (10, 50, 200)]
    monkeypatch.setattr(catalog, "leaves", lambda name: leaves)
    assert _group_limit("g", 90) == 40 and _group_limit("g", 89) == 40 and _group_limit("g", 88) == 39


def test_humaneval_pass_at_1_is_a_per_item_accuracy():
    # one greedy sample per problem: pass@1 is 0/1 per item, so the plan can size its detectable drop
    from harness.plan.power import accuracy_metric

    assert accuracy_metric("humaneval") == "pass@1,create_test"
    assert accuracy_metric("dq_pydoc_ppl") is None
