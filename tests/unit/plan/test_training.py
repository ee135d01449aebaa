"""A trained student's training memory at plan time: every cell of the student carries the estimate; one
that exceeds the budget (hardware.memory_gib, else the device's memory) is infeasible with the numbers; a
budget that repeats the training text is a plan warning. llama8b.yaml's kd-half fits one 80 GB GPU."""

import json
import os
import subprocess
import sys

from harness.plan import plan_matrix
from harness.spec import load_matrix, parse_matrix
from tests.conftest import MATRICES, REPO


def llama8b(settings, monkeypatch, memory_gib):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = load_matrix(MATRICES / "llama8b.yaml")
    m = m.model_copy(update={"hardware": m.hardware.model_copy(update={"memory_gib": memory_gib})})
    return plan_matrix(m, settings, host="cuda-h100")


def training_reasons(cell):
    return [r for r in cell.reasons if r.startswith("training students[")]


def test_llama8b_student_fits_one_80_gb_gpu(settings, monkeypatch):
    plan = llama8b(settings, monkeypatch, 80)
    students = [c for c in plan.cells if c.distill == "kd-half"]
    assert len(students) == 8 and all(c.train_estimate is not None for c in students)
    assert all(c.train_estimate is None for c in plan.cells if c.distill == "none")
    e = students[0].train_estimate
    # hand-computed in tests/unit/distill/test_training_memory.py
    assert (e.weights_gib, e.gradients_gib, e.optimizer_gib, e.activations_gib, e.logits_gib) == (
        8.46,
        8.46,
        8.59,
        4.5,
        12.04,
    )
    assert e.teacher_gib == 0.0 and e.total_gib == 43.04 and e.budget_gib == 80 and e.device == "cuda"
    assert e.student_params == 4_540_469_248 and e.teacher_params == 8_030_261_248
    assert not any(training_reasons(c) for c in students)
    assert plan.warnings == []  # 150 x 4 windows of 2048: 2.8 passes over the training text


def test_a_student_that_does_not_fit_is_infeasible_with_the_numbers(settings, monkeypatch):
    plan = llama8b(settings, monkeypatch, 24)  # the shipped matrix's serving budget
    for c in (c for c in plan.cells if c.distill == "kd-half"):
        (why,) = training_reasons(c)
        assert why.startswith(
            "training students[kd-half] needs an estimated 43.0 GiB on cuda, more than hardware.memory_gib 24 GiB "
            "(student 4.54B params, bf16 weights: weights 8.46 + gradients 8.46 + optimizer 8.59 (AdamW8bit"
        )
        assert "= 43.04 GiB per step; teacher pass (top-k cache, held-out CE/KL) 38.11 GiB" in why
        assert why.endswith("try a smaller batch_size or seq_len")  # every other lever is already pulled


def test_without_a_budget_the_gpu_memory_decides(settings, monkeypatch, base_matrix):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    doc = load_matrix(MATRICES / "llama8b.yaml").model_dump(mode="json")
    doc["hardware"].pop("memory_gib")
    old = next(s for s in doc["students"] if s["name"] == "kd-half")
    # llama8b.yaml's student as it was (kd-4l): fp32 weights, AdamW, no checkpointing, 16 x 2048 tokens
    for k in ("weights_dtype", "optimizer", "gradient_checkpointing"):
        old.pop(k)
    old.update(batch_size=16, max_steps=2000)
    plan = plan_matrix(parse_matrix(doc), settings, host="cuda-h100")
    cell = next(c for c in plan.cells if c.distill == "kd-half" and c.method == "none")
    (why,) = training_reasons(cell)
    assert "needs an estimated 275.8 GiB on cuda, more than the GPU's memory 79.2 GiB" in why
    assert "optimizer 33.83 (AdamW 2 x 4 B/param)" in why and "activations 158.96" in why
    assert "try weights_dtype: bf16 with optimizer: adamw_8bit, gradient_checkpointing: true" in why
    assert plan.warnings == [
        "students[kd-half]: 2000 steps x 16 x 2048 = 65,536,000 tokens go over the 460,668-token training text "
        "(216 windows of 2048 tokens) 148.1 times (more than 4 epochs): the student would mostly memorise it; "
        "lower max_steps/max_tokens"
    ]


def test_small_cpu_students_fit_the_hosts_ram(settings):
    plan = plan_matrix(load_matrix(MATRICES / "smollm2-cpu-full.yaml"), settings, host="cpu-avx512")
    trained = [c for c in plan.cells if c.train_estimate is not None]
    assert trained and all(c.status == "planned" for c in trained)
    e = trained[0].train_estimate
    assert e.device == "cpu" and e.budget_gib is not None and e.total_gib < 4 and "resident" in e.basis
    assert all(c.train_estimate is None for c in plan.cells if c.student and c.student.kind == "untrained")


def test_harness_plan_shows_the_training_estimate():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = [sys.executable, "-m", "harness", "plan", str(MATRICES / "llama8b.yaml"), "--host", "cuda-h100"]
    r = subprocess.run([*args, "--hardware-memory", "80"], capture_output=True, text=True, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr
    assert "train GiB" in r.stdout and "training kd-half: 43.0 GiB (fits 80): student 4.54B params" in r.stdout
    r = subprocess.run([*args, "--json"], capture_output=True, text=True, cwd=REPO, env=env)
    doc = json.loads(r.stdout)
    cell = next(c for c in doc["cells"] if c["distill"] == "kd-half")
    assert cell["train_estimate"]["total_gib"] == 43.04 and cell["train_estimate"]["budget_gib"] == 24
    assert any(x.startswith("training students[kd-half] needs an estimated 43.0 GiB") for x in cell["reasons"])
    assert doc["host"]["label"].endswith("NVIDIA H100 80GB HBM3") and doc["warnings"] == []
