"""The scheme x engine x device table: one place, and the plan reads it."""

from harness.plan.support import SUPPORT, support_problem
from harness.plan.planner import plan_matrix
from harness.spec import parse_matrix


def test_every_row_covers_both_devices():
    for key, row in SUPPORT.items():
        assert set(row) == {"cpu", "cuda"}, key


def test_known_answers():
    assert support_problem("w4a16", "vllm", "cpu") is None
    assert support_problem("w8a8-int8", "vllm", "cuda") is None
    assert "CUDA-only" in support_problem("bnb-nf4", "vllm", "cpu")
    assert "1-2 output tok/s" in support_problem("fp8-dynamic", "vllm", "cpu")
    assert support_problem("gguf", "llamacpp", "cpu") is None
    assert "served by: llamacpp" in support_problem("gguf", "vllm", "cpu")
    assert "no engine in dqbench" in support_problem("exl2", "vllm", "cpu")


def test_plan_marks_fp8_on_cpu_infeasible_with_the_reason(base_matrix, settings):
    base_matrix["axes"] = {"precision": ["bf16", "fp8"], "method": ["none", "fp8"], "distill": ["none"]}
    base_matrix["methods"] = {"fp8": {"kind": "rtn", "precisions": ["fp8"]}}
    cells = plan_matrix(parse_matrix(base_matrix), settings, host="cpu").cells
    fp8 = next(c for c in cells if c.precision == "fp8")
    assert fp8.status == "infeasible" and "FP8 kernels" in fp8.reason and "Ada/Hopper" in fp8.reason
    base_matrix["hardware"]["device"] = "cuda"
    fp8 = next(c for c in plan_matrix(parse_matrix(base_matrix), settings, host="cuda").cells if c.precision == "fp8")
    assert fp8.status == "planned"


def test_group_size_that_does_not_divide_is_one_clear_message(base_matrix, settings):
    base_matrix["axes"] = {"precision": ["bf16", "int4"], "method": ["none", "gptq"], "distill": ["none"]}
    base_matrix["methods"] = {"gptq": {"kind": "gptq", "group_size": 128}}
    cell = plan_matrix(parse_matrix(base_matrix), settings, host="cpu").cells[1]
    assert cell.status == "infeasible"
    assert "group_size 128 does not divide the input size 576" in cell.reason and "use 32, 64" in cell.reason
