import copy

import pytest

from harness.plan import plan_matrix
from harness.plan.rules import pairing
from harness.spec import load_matrix, parse_matrix
from tests.conftest import MATRICES


def test_cell_ids_are_stable_and_content_addressed(base_matrix, settings):
    a = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    b = plan_matrix(parse_matrix(copy.deepcopy(base_matrix)), settings, host="cpu-avx512")
    assert [c.cell_id for c in a.cells] == [c.cell_id for c in b.cells]
    assert len(a.cells[0].cell_id) == 12
    # the matrix name and description do not change what a cell measures
    base_matrix["name"], base_matrix["description"] = "renamed", "other words"
    assert plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512").cells[0].cell_id == a.cells[0].cell_id
    # anything that changes the measurement does
    base_matrix["load"]["output_tokens"] = 65
    assert plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512").cells[0].cell_id != a.cells[0].cell_id


def test_pairing_rules():
    assert pairing("bf16", "none") is None
    assert pairing("int4", "gptq") is None
    assert "uncompressed" in pairing("bf16", "gptq")
    assert "needs a compression method" in pairing("int4", "none")


def test_default_matrix_plans_baseline_and_quantized_cells(settings):
    plan = plan_matrix(load_matrix(MATRICES / "smollm2-cpu-full.yaml"), settings, host="cpu-avx512")
    got = {
        (c.precision, c.method): c for c in plan.cells if c.distill == "none" and c.draft is None
    }  # students: test_students.py; drafts: test_speculative.py
    assert sorted(got) == sorted(
        [
            ("bf16", "none"),
            ("int8", "w8a8_sq"),
            ("int8", "gguf"),
            ("int4", "gptq_g64"),
            ("int4", "rtn_g64"),
            ("int4", "awq_g64"),
            ("int4", "gguf"),
            ("int4", "rtn_g64_mixed"),
            ("int4", "rtn_g32"),
            ("int4", "qat_g64"),
        ]
    )
    base = got[("bf16", "none")]
    for key, c in got.items():
        if key[1] == "gguf":  # planned where the set-up built llama.cpp, otherwise says so
            assert c.serving.kind == "llamacpp"
            assert c.status == "planned" or "llama.cpp built by the set-up" in c.reason
        else:
            assert c.status == "planned" and c.serving.kind == "vllm", c.reason
        assert c.parent_id == (None if c is base else base.cell_id)
    est = base.estimate
    assert est.params == 134_515_008 and est.bits_per_weight == 16
    assert est.total_gib == pytest.approx(est.weights_gib + est.kv_cache_gib + est.overhead_gib, abs=1e-3)


def test_llama8b_plans_everywhere_and_says_why_not(settings, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from harness.settings import load_settings

    plan = plan_matrix(load_matrix(MATRICES / "llama8b.yaml"), load_settings(), host="cpu-avx512")
    # 4 precisions x 7 methods x 2 distill = 56 grid points; each method names its precisions:
    # (bf16 + fp8 + w8a8 + gptq + awq + 2 gguf + bnb) x 2 = 16 cells
    assert len(plan.cells) == 16 and len(plan.skipped) == 40
    assert all(c.status == "infeasible" for c in plan.cells)
    base = plan.cells[0]
    assert (base.precision, base.method, base.distill) == ("bf16", "none", "none")
    assert "needs a CUDA GPU" in base.reason
    awq = next(c for c in plan.cells if c.method == "awq" and c.distill == "none")
    assert awq.parent_id == base.cell_id and awq.serving.kind == "vllm"
    gguf = next(c for c in plan.cells if c.method == "gguf" and c.precision == "int4" and c.distill == "none")
    assert gguf.serving.kind == "llamacpp" and "builds llama.cpp for CPU only" in gguf.reason
    bnb = next(c for c in plan.cells if c.method == "bnb" and c.distill == "none")
    assert "no `bitsandbytes` quantization method" in bnb.reason
    assert "llama-3.1-8b-instruct: int8 x gptq: methods.gptq.precisions is ['int4']" in plan.skipped
    student = next(c for c in plan.cells if c.distill == "kd-half" and c.method == "none")
    assert student.parent_id == base.cell_id and student.teacher_id == base.cell_id
    assert "no distiller plugin" not in student.reason and student.teacher_serving.kind == "vllm"
    sq = next(c for c in plan.cells if c.distill == "kd-half" and c.method == "w8a8")
    assert sq.parent_id == student.cell_id and sq.teacher_id == base.cell_id  # teacher -> student -> quantized
    # bf16 8B weights: 8.03e9 x 2 bytes = 14.96 GiB; the pruned student keeps 16 of 32 layers
    assert base.estimate.weights_gib == pytest.approx(14.96, abs=0.01)
    assert student.estimate.params < 0.6 * base.estimate.params


def test_memory_budget_makes_cells_infeasible(base_matrix, settings):
    base_matrix["hardware"]["memory_gib"] = 1
    plan = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    assert plan.cells[0].status == "infeasible" and "exceeds hardware.memory_gib 1" in plan.cells[0].reason


def test_cuda_cells_on_gpu_host_are_planned(base_matrix, settings):
    base_matrix["hardware"]["device"] = "cuda"
    assert plan_matrix(parse_matrix(base_matrix), settings, host="cuda-h100").cells[0].status == "planned"
    assert plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512").cells[0].status == "infeasible"


def test_parents_come_first(settings, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = plan_matrix(load_matrix(MATRICES / "llama8b.yaml"), settings, host="cuda-h100")
    seen = set()
    for c in plan.cells:
        assert c.parent_id is None or c.parent_id in seen
        seen.add(c.cell_id)


def test_unknown_task_is_one_error_before_anything_runs(base_matrix, settings):
    from harness.errors import PlanError

    base_matrix["evaluation"]["tasks"].append({"name": "dq_arc_eazy"})
    with pytest.raises(PlanError) as e:
        plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    assert "unknown task 'dq_arc_eazy'" in str(e.value) and "did you mean dq_arc_easy" in str(e.value)


@pytest.mark.parametrize("offline", [True, False])
def test_a_task_that_needs_the_hub_makes_cells_infeasible_offline_not_the_matrix_invalid(
    base_matrix, tmp_path, monkeypatch, offline
):
    from harness.settings import load_settings

    monkeypatch.setenv("DQBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DQBENCH_OFFLINE", "1" if offline else "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    base_matrix["evaluation"]["tasks"].append({"name": "gsm8k"})  # lm-eval's default: 5 shots from train
    plan = plan_matrix(parse_matrix(base_matrix), load_settings(), host="cpu-avx512")
    reasons = {c.reason for c in plan.cells}
    if offline:
        assert all(c.status == "infeasible" for c in plan.cells)
        assert all("'gsm8k' at 5-shot draws its examples from the 'train' split" in (r or "") for r in reasons)
    else:
        assert not any("gsm8k" in (r or "") for r in reasons)
