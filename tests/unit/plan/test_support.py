"""The scheme × engine × capability table: one place, the plan reads it, and its answers depend on the
host's probed capabilities (presets stand in for the host classes this project meets)."""

import pytest

from harness.hw.probe import load_override
from harness.plan.planner import plan_matrix
from harness.plan.support import SUPPORT, support_problem
from harness.spec import parse_matrix

AVX2, AVX512, H100, A100 = (load_override(n) for n in ("cpu-avx2", "cpu-avx512", "cuda-h100", "cuda-a100"))


def test_every_row_says_what_it_needs_on_both_devices():
    for key, row in SUPPORT.items():
        assert row.cpu is not None and row.cuda is not None, key
        for check in (*row.cpu, *row.cuda):
            assert callable(check), key


def test_known_answers_on_an_avx512_host():
    assert support_problem("w4a16", "vllm", "cpu", AVX512) is None
    assert support_problem("w4a16-asym", "vllm", "cpu", AVX512) is None
    assert support_problem("w8a8-int8", "vllm", "cpu", AVX512) is None
    assert "CUDA-only" in support_problem("bnb-nf4", "vllm", "cpu", AVX512)
    assert "1-2 output tok/s" in support_problem("fp8-dynamic", "vllm", "cpu", AVX512)
    assert support_problem("gguf", "llamacpp", "cpu", AVX512) is None
    assert "served by: llamacpp" in support_problem("gguf", "vllm", "cpu", AVX512)
    assert "no engine in dqbench" in support_problem("exl2", "vllm", "cpu", AVX512)


def test_w4a16_on_an_avx2_host_names_the_missing_kernel_and_what_runs_instead():
    why = support_problem("w4a16", "vllm", "cpu", AVX2)
    assert "cpu_gemm_wna16" in why and "_C_AVX2" in why and "AVX-512" in why
    assert "GGUF Q4_K_M on llama.cpp" in why  # the int4 path that exists on this host
    assert "cpu_gemm_wna16" in support_problem("w4a16-asym", "vllm", "cpu", AVX2)
    # int8 W8A8 goes through oneDNN there, and GGUF through ggml's own kernels
    assert support_problem("w8a8-int8", "vllm", "cpu", AVX2) is None
    assert support_problem("gguf", "llamacpp", "cpu", AVX2) is None


def test_fp8_w8a8_needs_ada_or_hopper():
    assert support_problem("fp8-dynamic", "vllm", "cuda", H100) is None
    why = support_problem("fp8-dynamic", "vllm", "cuda", A100)
    assert ">= 8.9" in why and "8.0" in why and "weight-only" in why and "not the W8A8" in why
    assert support_problem("w4a16", "vllm", "cuda", A100) is None


def test_no_engine_found_is_a_reason_not_a_crash():
    broken = AVX2.model_copy(update={"vllm": None, "llamacpp": None})
    assert "probe found none" in support_problem("w8a8-int8", "vllm", "cpu", broken)
    assert support_problem("gguf", "llamacpp", "cpu", broken) is None  # the plugin's own check names the fix
    failed = AVX2.model_copy(update={"llamacpp": AVX2.llamacpp.model_copy(update={"error": "no llama-server"})})
    assert "./dq setup" in support_problem("gguf", "llamacpp", "cpu", failed)


def _int4_matrix(base_matrix):
    base_matrix["axes"] = {"precision": ["bf16", "int4"], "method": ["none", "rtn", "gguf"], "distill": ["none"]}
    base_matrix["methods"] = {
        "rtn": {"kind": "rtn", "group_size": 64, "precisions": ["int4"]},
        "gguf": {"kind": "gguf", "precisions": ["int4"]},
    }
    return parse_matrix(base_matrix)


def test_plan_on_avx2_marks_w4a16_infeasible_and_keeps_gguf_int4(base_matrix, settings):
    cells = {c.method: c for c in plan_matrix(_int4_matrix(base_matrix), settings, host=AVX2).cells}
    assert cells["rtn"].status == "infeasible" and "AVX-512" in cells["rtn"].reason
    assert "GGUF Q4_K_M" in cells["rtn"].reason
    # GGUF is not refused for the ISA (only, on a machine without the set-up's build, for the missing tool)
    assert cells["gguf"].status == "planned" or "AVX" not in cells["gguf"].reason, cells["gguf"].reason
    assert cells["none"].status == "planned"


def test_plan_on_avx512_runs_w4a16(base_matrix, settings):
    cells = {c.method: c for c in plan_matrix(_int4_matrix(base_matrix), settings, host=AVX512).cells}
    assert cells["rtn"].status == "planned", cells["rtn"].reason


def test_cell_ids_do_not_depend_on_the_host(base_matrix, settings):
    a = plan_matrix(_int4_matrix(base_matrix), settings, host=AVX2)
    b = plan_matrix(_int4_matrix(base_matrix), settings, host=AVX512)
    assert [c.cell_id for c in a.cells] == [c.cell_id for c in b.cells]
    assert a.host["host_id"] != b.host["host_id"] and a.cells[0].host_id == a.host["host_id"]


def test_plan_marks_fp8_on_cpu_infeasible_with_the_reason(base_matrix, settings):
    base_matrix["axes"] = {"precision": ["bf16", "fp8"], "method": ["none", "fp8"], "distill": ["none"]}
    base_matrix["methods"] = {"fp8": {"kind": "rtn", "precisions": ["fp8"]}}
    cells = plan_matrix(parse_matrix(base_matrix), settings, host=AVX512).cells
    fp8 = next(c for c in cells if c.precision == "fp8")
    assert fp8.status == "infeasible" and "FP8 kernels" in fp8.reason and "Ada/Hopper" in fp8.reason
    base_matrix["hardware"]["device"] = "cuda"
    fp8 = next(c for c in plan_matrix(parse_matrix(base_matrix), settings, host=H100).cells if c.precision == "fp8")
    assert fp8.status == "planned", fp8.reason
    fp8 = next(c for c in plan_matrix(parse_matrix(base_matrix), settings, host=A100).cells if c.precision == "fp8")
    assert fp8.status == "infeasible" and "weight-only" in fp8.reason


def test_group_size_that_does_not_divide_is_one_clear_message(base_matrix, settings):
    base_matrix["axes"] = {"precision": ["bf16", "int4"], "method": ["none", "gptq"], "distill": ["none"]}
    base_matrix["methods"] = {"gptq": {"kind": "gptq", "group_size": 128}}
    cell = plan_matrix(parse_matrix(base_matrix), settings, host=AVX512).cells[1]
    assert cell.status == "infeasible"
    assert "group_size 128 does not divide the input size 576" in cell.reason and "use 32, 64" in cell.reason


@pytest.mark.parametrize("host,ref", [(AVX2, "fp32"), (AVX512, "bf16"), (H100, "bf16")])
def test_auto_precision_is_the_hosts_fast_dtype_and_compressed_cells_compute_in_it(base_matrix, settings, host, ref):
    base_matrix["axes"] = {"precision": ["auto", "int8"], "method": ["none", "w8a8"], "distill": ["none"]}
    base_matrix["methods"] = {"w8a8": {"kind": "smoothquant_gptq", "precisions": ["int8"]}}
    base_matrix["hardware"]["device"] = "auto"
    plan = plan_matrix(parse_matrix(base_matrix), settings, host=host)
    base, q = plan.cells
    assert base.precision == ref and base.compute_dtype == ref and q.compute_dtype == ref
    assert q.parent_id == base.cell_id and base.dtype_note.startswith(f"auto -> {ref}")


def test_auto_and_its_resolution_on_one_axis_are_one_cell(base_matrix, settings):
    base_matrix["axes"] = {"precision": ["auto", "fp32"], "method": ["none"], "distill": ["none"]}
    plan = plan_matrix(parse_matrix(base_matrix), settings, host=AVX2)
    assert [c.precision for c in plan.cells] == ["fp32"] and "already on the axis" in plan.skipped[0]


def test_bf16_ids_are_unchanged_by_the_compute_dtype_field(base_matrix, settings):
    """A compressed cell computing in bf16 keeps the id it had before compute_dtype existed."""
    from harness.plan.cell import content_id
    from harness.plan.planner import _identity

    m = _int4_matrix(base_matrix)
    plan = plan_matrix(m, settings, host=AVX512)
    rtn = next(c for c in plan.cells if c.method == "rtn")
    assert rtn.cell_id == content_id(_identity(m, m.models[0], "int4", "rtn", "none", rtn.serving))


def test_engines_that_pick_their_own_dtype_have_none_and_one_id_on_every_host(base_matrix, settings):
    base_matrix["axes"] = {"precision": ["auto", "int4"], "method": ["none", "gguf"], "distill": ["none"]}
    base_matrix["methods"] = {"gguf": {"kind": "gguf", "precisions": ["int4"]}}
    m = parse_matrix(base_matrix)
    a, b = (plan_matrix(m, settings, host=h).cells for h in (AVX2, AVX512))
    assert a[1].compute_dtype is None and a[1].cell_id == b[1].cell_id  # llama.cpp computes in its own types
    assert a[0].precision == "fp32" and b[0].precision == "bf16" and a[0].cell_id != b[0].cell_id


def test_without_auto_compressed_cells_keep_bf16_activations(base_matrix, settings):
    base_matrix["axes"] = {"precision": ["fp32", "int8"], "method": ["none", "w8a8"], "distill": ["none"]}
    base_matrix["methods"] = {"w8a8": {"kind": "smoothquant_gptq", "precisions": ["int8"]}}
    cells = plan_matrix(parse_matrix(base_matrix), settings, host=AVX2).cells
    assert [c.compute_dtype for c in cells] == ["fp32", "bf16"] and cells[1].dtype_note is None
