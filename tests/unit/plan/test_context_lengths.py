"""The plan refuses a context length above the window of a server the matrix's cells use: one error naming the
field, the value and the fix, before any model is prepared; a serving entry no cell uses is not held against it."""

import pytest

from harness.errors import PlanError
from harness.plan.context_lengths import engines, plan_problems, serving_problems
from harness.plan.planner import plan_matrix
from harness.spec import parse_matrix


def _long(base_matrix: dict, lengths: list[int], vllm_ctx: int, llamacpp_ctx: int) -> dict:
    m = dict(base_matrix)
    m["serving"] = {**m["serving"], "max_model_len": vllm_ctx}
    m["extra_serving"] = [{"kind": "llamacpp", "max_model_len": llamacpp_ctx, "parallel": 4}]
    m["evaluation"] = {
        **m["evaluation"],
        "max_length": min(vllm_ctx - 1, max(lengths)),
        "tasks": [{"name": "dq_niah", "context_lengths": lengths, "limit": 2}],
    }
    return m


def test_engines_are_those_of_the_method_axis(base_matrix):
    m = parse_matrix(base_matrix)
    assert engines(m) == ["llamacpp", "vllm"]  # none/w8a8/w4a16 on vLLM, gguf on llama.cpp
    base_matrix["axes"] = {**base_matrix["axes"], "method": ["none", "w8a8"]}
    assert engines(parse_matrix(base_matrix)) == ["vllm"]


def test_a_length_above_a_used_window_is_one_plan_error(base_matrix, settings):
    m = parse_matrix(_long(base_matrix, [1024, 4096], vllm_ctx=8192, llamacpp_ctx=2048))
    (problem,) = serving_problems(m)
    assert "evaluation.tasks[dq_niah].context_lengths: 4096 exceeds max_model_len 2048" in problem
    assert "`kind: llamacpp` serving entry" in problem and "raise that max_model_len to >= 4096" in problem
    with pytest.raises(PlanError, match="context_lengths: 4096 exceeds max_model_len 2048"):
        plan_matrix(m, settings, host="cpu-avx512")


def test_lengths_within_every_window_plan_and_unused_entries_do_not_count(base_matrix, settings):
    ok = parse_matrix(_long(base_matrix, [1024, 4096], vllm_ctx=8192, llamacpp_ctx=8192))
    assert serving_problems(ok) == []
    assert plan_matrix(ok, settings, host="cpu-avx512").cells
    no_gguf = _long(base_matrix, [1024, 4096], vllm_ctx=8192, llamacpp_ctx=2048)
    no_gguf["axes"] = {**no_gguf["axes"], "method": ["none", "w8a8"]}
    assert serving_problems(parse_matrix(no_gguf)) == []  # no cell is served by llama.cpp


def test_a_matrix_without_lengths_has_no_problem_and_hashes_no_new_field(base_matrix):
    m = parse_matrix(base_matrix)
    assert serving_problems(m) == []
    # what a cell id hashes (harness/plan/planner._identity): the field is absent while left at its default
    assert all("context_lengths" not in t for t in m.evaluation.model_dump(mode="json")["tasks"])


def test_a_long_context_task_in_the_decide_measure_is_refused(base_matrix, settings):
    m = _long(base_matrix, [1024, 2048], vllm_ctx=8192, llamacpp_ctx=8192)
    m["evaluation"]["tasks"].append({"name": "arc_easy"})
    m["decide"] = {"max_drop": "5%", "memory_gib": 24}  # measure: aggregate, over every task with items
    with pytest.raises(PlanError, match="decide.measure: 'dq_niah' is scored once per context length"):
        plan_matrix(parse_matrix(m), settings, host="cpu-avx512")
    m["decide"]["measure"] = {"tasks": ["arc_easy"]}
    assert plan_problems(parse_matrix(m)) == []
