"""The `decide:` block against its evaluation (harness/decide/question.py) and in the plan: one clear error per
unanswerable question before anything runs, the measure's tasks and metrics, the round budget, and the block
carried into every cell outside its id."""

from __future__ import annotations

import pytest

from harness.decide.question import decide_problems, item_budget, measure_tasks, question_lines
from harness.errors import PlanError
from harness.plan import plan_matrix
from harness.spec import parse_matrix
from harness.spec.decide import Decide
from harness.spec.evaluation import LMEvalSpec

EVAL = LMEvalSpec.model_validate(
    {
        "tasks": [
            {"name": "dq_pydoc_ppl", "limit": 1},
            {"name": "arc_easy", "limit": 300},
            {"name": "gsm8k", "num_fewshot": 0},
            {"name": "mmlu"},
        ]
    }
)


def test_the_aggregate_is_every_task_with_a_per_item_accuracy():
    assert measure_tasks(EVAL, Decide(max_drop="2%")) == {
        "arc_easy": "acc_norm",
        "gsm8k": "exact_match,strict-match",
        "mmlu": "acc",
    }
    assert measure_tasks(EVAL, Decide(max_drop="2%", measure={"task": "arc_easy"})) == {"arc_easy": "acc_norm"}
    assert decide_problems(EVAL, Decide(max_drop="1.5pt", measure={"task": "arc_easy", "metric": "acc"})) == []


@pytest.mark.parametrize(
    "measure,says",
    [
        ({"task": "hellaswag"}, "is not one of evaluation.tasks"),
        ({"task": "dq_pydoc_ppl"}, "perplexity task"),
        ({"task": "arc_easy", "metric": "perplexity"}, "not a per-item 0/1 score"),
        ({"task": "arc_easy", "metric": "exact_match"}, "reports no 'exact_match'"),
    ],
)
def test_an_unanswerable_measure_is_one_clear_error(measure, says):
    problems = decide_problems(EVAL, Decide(max_drop="2%", measure=measure))
    assert len(problems) == 1 and says in problems[0] and problems[0].startswith("decide.measure")


def test_an_aggregate_over_named_tasks():
    d = Decide(max_drop="5%", measure={"tasks": ["mmlu", "arc_easy"]})
    assert measure_tasks(EVAL, d) == {"arc_easy": "acc_norm", "mmlu": "acc"} and decide_problems(EVAL, d) == []
    from harness.decide.question import measure_name

    assert measure_name(d) == "aggregate:arc_easy,mmlu"  # as the advisor's --tasks names it
    bad = Decide(max_drop="5%", measure={"tasks": ["arc_easy", "dq_pydoc_ppl", "hellaswag"]})
    problems = decide_problems(EVAL, bad)
    assert (
        len(problems) == 2 and "'dq_pydoc_ppl' has no per-item" in problems[0] and "'hellaswag' is not" in problems[1]
    )
    with pytest.raises(ValueError, match="duplicate tasks"):
        Decide(max_drop="5%", measure={"tasks": ["arc_easy", "arc_easy"]})


def test_an_aggregate_of_perplexity_tasks_only_is_refused():
    only_ppl = LMEvalSpec.model_validate({"tasks": [{"name": "dq_pydoc_ppl", "limit": 1}]})
    (problem,) = decide_problems(only_ppl, Decide(max_drop="2%"))
    assert "perplexity tasks cannot be a measure" in problem


def test_the_budget_is_max_items_or_about_the_smallest_measured_population_times_the_tasks():
    assert item_budget(EVAL, Decide(max_drop="2%", max_items=100)) == (100, "decide.max_items 100")
    n, why = item_budget(EVAL, Decide(max_drop="2%", max_items=2000))
    assert n == 900 and why == "about 3 x 300: arc_easy has 300 documents (limit 300)"
    lines = question_lines(EVAL, Decide(max_drop="2%", max_items=2000, memory_gib=24))
    assert "at most 900 items" in lines[1] and "group-sequential design" in lines[0]
    cs = question_lines(EVAL, Decide(max_drop="2%", max_items=2000, method="confidence-sequence"))
    assert "Waudby-Smith & Ramdas 2024" in cs[0]


def test_decide_validation_of_its_own_fields():
    with pytest.raises(ValueError, match="batch_items 50 is larger than decide.max_items 20"):
        Decide(max_drop="2%", max_items=20, batch_items=50)
    with pytest.raises(ValueError, match="unit"):
        Decide(max_drop=2)  # type: ignore[arg-type]
    assert Decide(max_drop="1.5pt").limit == pytest.approx(0.015) and Decide(max_drop="5%").limit == 0.05


def test_the_plan_refuses_an_unanswerable_question_and_carries_a_good_one_outside_the_ids(base_matrix, settings):
    plain = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    base_matrix["decide"] = {"max_drop": "5%", "measure": {"task": "dq_pydoc_ppl"}}
    with pytest.raises(PlanError, match="perplexity task"):
        plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    base_matrix["decide"] = {"max_drop": "5%", "max_items": 50, "memory_gib": 24}
    p = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    assert [c.cell_id for c in p.cells] == [c.cell_id for c in plain.cells]  # no cell id moved
    assert all(c.decide is not None and c.decide.max_items == 50 for c in p.cells)
    assert "decide" in p.cells[0].model_dump(mode="json")
    assert "decide" not in plain.cells[0].model_dump(mode="json")  # left out of dumps when unset
    assert "evaluate_only" not in p.cells[0].model_dump(mode="json")
