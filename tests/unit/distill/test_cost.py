"""The GPU-hours / cost estimate: the stated formula, checked by hand."""

import pytest

from harness.distill.cost import estimate, gpu_hours, run_flops
from harness.spec.students import CostAssumptions


def test_flops_per_method():
    kd = run_flops("logit_kd", 100, 50, 1000, alpha=0.5)
    assert kd["student_train"] == 6 * 50 * 1000 and kd["teacher_forward"] == 2 * 100 * 1000
    assert run_flops("logit_kd", 100, 50, 1000, alpha=0.0)["teacher_forward"] == 0  # CE control: no teacher
    sft = run_flops("sft", 100, 50, 1000, gen_tokens=300)
    assert sft["generation"] == 2 * 100 * 300 and sft["teacher_forward"] == 0
    gkd = run_flops("gkd", 100, 50, 1000, on_policy_tokens=200)
    assert gkd["total"] == 6 * 50 * 1000 + 2 * 100 * 1000 + 2 * 50 * 200


def test_gpu_hours_and_reference_size():
    c = CostAssumptions(peak_tflops=1000, mfu=0.5, usd_per_gpu_hour=2.0, reference_tokens=10**9)
    assert gpu_hours(1.8e18, 1000, 0.5) == pytest.approx(1.0)  # 1.8e18 / (5e14 * 3600)
    e = estimate("logit_kd", c, 1.35e8, 8.1e7, 81920, ref_teacher=8.0e9, ref_student=4.5e9, alpha=0.5)
    ref = e["reference"]
    flops = 6 * 4.5e9 * 1e9 + 2 * 8.0e9 * 1e9
    assert ref["flops"]["total"] == pytest.approx(flops)
    assert ref["gpu_hours"] == pytest.approx(flops / (1000e12 * 0.5 * 3600))  # ~23.9 GPU-hours
    assert ref["usd"] == pytest.approx(2.0 * ref["gpu_hours"])
    assert "6 N_s D" in e["formula"] and e["this_run"]["tokens"] == 81920
