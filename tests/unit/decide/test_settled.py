"""When a done cell's stored decision answers the current question, and what its evaluation still owes
(harness/decide/settled.py): the runner re-runs only that."""

from __future__ import annotations

from harness.decide.settled import needs_evaluation
from harness.plan import plan_matrix
from harness.result import CellResult, Quality
from harness.spec import parse_matrix
from tests.fakes.decisions import decision


def cells(base_matrix, settings, **decide):
    base_matrix["decide"] = {"max_drop": "5%", "max_items": 20, "batch_items": 10, **decide}
    p = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    ref = next(c for c in p.cells if c.parent_id is None)
    child = next(c for c in p.cells if c.parent_id is not None)
    return ref, child


def done(cell, **d):
    dec = decision(
        tasks={"dq_lambada": "acc", "dq_arc_easy": "acc", "dq_hellaswag": "acc_norm"},
        **{
            "reference": cell.parent_id,
            "stop": "budget",
            "verdict": "undecided",
            "items_used": 20,
            "lo": 0.0,
            "hi": 0.1,
        }
        | d,
    )
    return CellResult(
        cell_id=cell.cell_id,
        matrix="m",
        label=cell.label,
        status="done",
        plan=cell.model_dump(mode="json"),
        quality=Quality(decision=dec),
    )


def test_a_decided_cell_stands_and_an_undecided_one_goes_on_when_it_can(base_matrix, settings):
    ref, child = cells(base_matrix, settings)
    assert needs_evaluation(child, done(child, verdict="beyond", stop="beyond", lo=0.2, hi=0.5), None) is None
    assert needs_evaluation(child, done(child), None) is None  # budget spent, same budget: nothing to add
    ref2, child2 = cells(base_matrix, settings, max_items=40)
    assert "max_items rose to 40" in needs_evaluation(child2, done(child2), None)
    assert "max_items rose to 40" in needs_evaluation(
        ref2, done(ref2, reference=None, stop="reference", verdict=None), None
    )
    assert needs_evaluation(ref, done(ref, reference=None, stop="reference", verdict=None), None) is None


def test_a_stricter_limit_reopens_only_what_the_stored_interval_no_longer_decides(base_matrix, settings):
    _, strict = cells(base_matrix, settings, max_drop="2%")
    within = done(strict, verdict="within", stop="within", items_used=10, lo=-0.1, hi=0.04)
    assert "limit changed" in needs_evaluation(strict, within, None)
    clear = done(strict, verdict="within", stop="within", items_used=10, lo=-0.1, hi=0.01)
    assert needs_evaluation(strict, clear, None) is None  # [-10 %, +1 %] is within 2 % too


def test_the_reference_having_more_items_reopens_a_cell_it_cut_short(base_matrix, settings):
    _, child = cells(base_matrix, settings)
    short = done(child, stop="reference_exhausted", items_used=10)
    assert needs_evaluation(child, short, 10) is None
    assert "now has 20 items" in needs_evaluation(child, short, 20)


def test_a_changed_question_or_a_skipped_or_plain_evaluation_reopens_it(base_matrix, settings):
    _, child = cells(base_matrix, settings, error_rate=0.01)
    assert "error rate changed" in needs_evaluation(child, done(child), None)
    _, child = cells(base_matrix, settings)
    assert "skipped" in needs_evaluation(child, done(child, stop="skipped", verdict=None), None)
    plain = done(child).model_copy(update={"quality": Quality()})
    assert "without `decide:`" in needs_evaluation(child, plain, None)


def test_a_spec_decoded_cell_is_never_re_evaluated_for_the_question(base_matrix, settings):
    # its quality is its target's and it has no decision of its own: an evaluate-only re-run would measure no
    # acceptance and fail its speculative step (found on the default matrix)
    from harness.plan.cell import DraftPlan

    _, child = cells(base_matrix, settings)
    spec = child.model_copy(update={"draft": DraftPlan(name="d", target_id=child.cell_id, tokens=4)})
    plain = CellResult(
        cell_id=spec.cell_id, matrix="m", label=spec.label, status="done", plan=spec.model_dump(mode="json")
    )
    assert needs_evaluation(child, plain.model_copy(update={"cell_id": child.cell_id}), None) is not None
    assert needs_evaluation(spec, plain, None) is None
