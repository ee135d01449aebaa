"""The reference of a cell, defined once (harness/plan/lineage.py), against the parents the planner links."""

from harness.plan.lineage import parent_is_reference, reference_id, reference_ids
from harness.plan.planner import plan_matrix
from harness.settings import load_settings
from harness.spec import load_matrix

PARENTS = {"t": None, "tq": "t", "s": "t", "sq": "s"}


def test_reference_is_the_lineage_root():
    assert reference_ids(PARENTS, PARENTS) == {"t": "t", "tq": "t", "s": "t", "sq": "t"}
    # a quantized student: parent the student, reference the teacher
    assert PARENTS["sq"] == "s" and reference_id("sq", PARENTS) == "t"


def test_unknown_parents_and_cycles_end_the_walk():
    assert reference_id("sq", {"sq": "s", "s": "gone"}) == "s"  # the teacher is not in the results
    assert reference_id("a", {"a": "b", "b": "a"}) == "b"
    assert reference_id("x", {}) == "x"


def test_parent_is_reference():
    assert parent_is_reference("t", "t")
    assert not parent_is_reference("s", "t") and not parent_is_reference(None, None)


def test_planned_students_reference_their_teacher():
    plan = plan_matrix(load_matrix("matrices/smollm2-cpu.yaml"), load_settings(), host="cpu-avx512")
    parents = {c.cell_id: c.parent_id for c in plan.cells}
    teacher = next(c for c in plan.cells if c.method == "none" and c.distill == "none")
    for c in plan.cells:
        assert reference_id(c.cell_id, parents) == teacher.cell_id
        if c.distill != "none":
            assert c.teacher_id == teacher.cell_id
