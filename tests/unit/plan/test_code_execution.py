"""The opt-in to executing model-written code (`evaluation.allow_code_execution`, issue #27 item 2): a matrix whose
tasks execute code is refused without it, with one error naming the field, its value and the fix, before any cell
is planned; with it the plan says the programs run in the sandbox and how this host confines them; it moves no
cell id; a code task without dqbench's sandboxed metric (mbpp) is refused either way."""

from __future__ import annotations

from unittest import mock

import pytest

from harness.errors import PlanError
from harness.evaluate.code_sandbox import host_isolation
from harness.plan import plan_matrix
from harness.spec import parse_matrix


def _plan(matrix, settings):
    # the refusal comes with the matrix-wide problems, before the grid: no cell, model or data is looked at
    with mock.patch("harness.plan.planner.resolve_precisions", side_effect=AssertionError("the grid was planned")):
        return plan_matrix(parse_matrix(matrix), settings, host="cpu-avx512")


def test_a_code_task_without_the_opt_in_is_one_error_before_anything_loads(base_matrix, settings):
    base_matrix["evaluation"]["tasks"].append({"name": "humaneval", "limit": 5})
    with pytest.raises(PlanError) as e:
        _plan(base_matrix, settings)
    msg = str(e.value)
    assert msg.count("allow_code_execution") == 2 and "['humaneval']" in msg
    assert "evaluation.allow_code_execution is false" in msg and "set `allow_code_execution: true`" in msg


def test_with_the_opt_in_the_plan_names_the_sandbox_and_its_isolation(base_matrix, settings):
    base_matrix["evaluation"]["tasks"].append({"name": "humaneval", "limit": 5})
    base_matrix["evaluation"]["allow_code_execution"] = True
    plan = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    (line,) = [g for g in plan.grants if "allow_code_execution" in g]
    assert "humaneval" in line and "sandbox" in line and host_isolation().describe() in line


def test_the_opt_in_moves_no_cell_id(base_matrix, settings):
    before = [c.cell_id for c in plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512").cells]
    base_matrix["evaluation"]["allow_code_execution"] = True
    plan = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    assert [c.cell_id for c in plan.cells] == before
    assert not plan.grants  # no task executes code: nothing to say


@pytest.mark.parametrize("allow", [False, True])
def test_mbpp_is_refused_it_would_run_outside_the_sandbox_and_its_data_is_on_the_hub(base_matrix, settings, allow):
    base_matrix["evaluation"]["tasks"].append({"name": "mbpp"})
    base_matrix["evaluation"]["allow_code_execution"] = allow
    with pytest.raises(PlanError) as e:
        _plan(base_matrix, settings)
    msg = str(e.value)
    assert "'mbpp'" in msg and "outside dqbench's sandbox" in msg and "no registry package carries it" in msg
    assert ("allow_code_execution is false" in msg) is not allow
