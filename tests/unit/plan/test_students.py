"""Planning students: lineage (teacher -> student -> quantized student), which methods a student is
crossed with, and the checks that refuse a student before anything is trained."""

import json

from harness.plan import plan_matrix
from harness.spec import load_matrix, parse_matrix
from tests.conftest import MATRICES


def matrix(base_matrix, students, distill):
    base_matrix["students"] = students
    base_matrix["axes"]["distill"] = ["none", *distill]
    return parse_matrix(base_matrix)


def test_default_matrix_lineage(settings):
    plan = plan_matrix(load_matrix(MATRICES / "smollm2-cpu-full.yaml"), settings, host="cpu-avx512")
    by = {(c.distill, c.method): c for c in plan.cells if c.draft is None}  # drafts: test_speculative.py
    teacher = by[("none", "none")]
    kd, q = by[("pruned-kd", "none")], by[("pruned-kd", "w8a8_sq")]
    assert kd.parent_id == teacher.cell_id and kd.teacher_id == teacher.cell_id
    assert q.parent_id == kd.cell_id and q.teacher_id == teacher.cell_id
    assert kd.arch["num_layers"] == 15 and kd.estimate.params < 0.65 * teacher.estimate.params
    # students[].methods: the CE control and the untrained student are not quantized; the KD one only in W8A8
    assert {m for (d, m) in by if d == "pruned-ce"} == {"none"} and {m for (d, m) in by if d == "pruned-kd-feat"} == {
        "none"
    }
    assert by[("pruned-kd-feat", "none")].student.feature_weight == 1.0
    assert {m for (d, m) in by if d == "pruned-kd"} == {"none", "w8a8_sq"}
    assert any("pruned-kd x gptq_g64: students[pruned-kd].methods is ['w8a8_sq']" in s for s in plan.skipped)
    assert all(c.status == "planned" for c in plan.cells if c.distill != "none")


def test_student_cell_ids_ignore_routing_fields(base_matrix, settings):
    s = {"name": "kd", "kind": "logit_kd", "student": {"kind": "prune"}, "max_steps": 5}
    a = plan_matrix(matrix(base_matrix, [s], ["kd"]), settings, host="cpu-avx512")
    b = plan_matrix(
        matrix(base_matrix, [{**s, "methods": [], "cost": {"usd_per_gpu_hour": 9}}], ["kd"]),
        settings,
        host="cpu-avx512",
    )
    ida = next(c.cell_id for c in a.cells if c.distill == "kd" and c.method == "none")
    idb = next(c.cell_id for c in b.cells if c.distill == "kd" and c.method == "none")
    assert ida == idb


def test_vocabulary_mismatch_suggests_sft(base_matrix, settings, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": 256,
                "intermediate_size": 512,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 32000,
                "tie_word_embeddings": True,
            }
        )
    )
    students = [
        {"name": "kd", "kind": "logit_kd", "student": {"kind": "local", "path": str(other)}, "max_steps": 5},
        {"name": "sft", "kind": "sft", "student": {"kind": "local", "path": str(other)}, "max_steps": 5},
    ]
    plan = plan_matrix(matrix(base_matrix, students, ["kd", "sft"]), settings, host="cpu-avx512")
    kd = next(c for c in plan.cells if c.distill == "kd" and c.method == "none")
    sft = next(c for c in plan.cells if c.distill == "sft" and c.method == "none")
    assert kd.status == "infeasible" and "vocabulary (32000) differs from the teacher's (49152)" in kd.reason
    assert "use kind: sft" in kd.reason
    assert sft.status == "planned" and sft.arch["vocab_size"] == 32000


def test_training_text_must_not_overlap_the_evaluated_lambada(base_matrix, settings):
    for t in base_matrix["evaluation"]["tasks"]:
        if t["name"] == "dq_lambada":
            t["limit"] = None
    s = [
        {"name": "kd", "kind": "logit_kd", "student": {"kind": "prune"}, "max_steps": 5},
        {"name": "raw", "kind": "untrained", "student": {"kind": "prune"}},
    ]
    plan = plan_matrix(matrix(base_matrix, s, ["kd", "raw"]), settings, host="cpu-avx512")
    kd = next(c for c in plan.cells if c.distill == "kd" and c.method == "none")
    raw = next(c for c in plan.cells if c.distill == "raw" and c.method == "none")
    assert "dq_lambada limit None reaches LAMBADA documents >= 2500" in kd.reason
    assert raw.status == "planned"  # an untrained student trains on nothing


def test_pruned_arch_keeps_first_and_last_layer(base_matrix, settings):
    from harness.models.arch import pruned_layers

    s = [{"name": "two", "kind": "untrained", "student": {"kind": "prune", "keep_every": 16}}]
    plan = plan_matrix(matrix(base_matrix, s, ["two"]), settings, host="cpu-avx512")
    c = next(c for c in plan.cells if c.distill == "two")
    assert c.status == "planned" and c.arch["num_layers"] == 2  # ceil(30 / 16)
    assert pruned_layers(30, 16) == [0, 29] and pruned_layers(30, 2)[:3] == [0, 2, 4] and pruned_layers(30, 2)[-1] == 29
    assert len(pruned_layers(32, 2)) == 16 and len(pruned_layers(30, 3)) == 10


def test_feature_layer_map_is_checked(base_matrix, settings):
    s = [
        {
            "name": "f",
            "kind": "logit_kd",
            "student": {"kind": "prune"},
            "max_steps": 5,
            "feature_weight": 1.0,
            "feature_layers": {0: 0, 20: 29},
        },
        {"name": "g", "kind": "logit_kd", "student": {"kind": "prune"}, "max_steps": 5, "feature_layers": {0: 0}},
        {"name": "h", "kind": "logit_kd", "student": {"kind": "prune"}, "max_steps": 5, "feature_weight": 0.5},
    ]
    plan = plan_matrix(matrix(base_matrix, s, ["f", "g", "h"]), settings, host="cpu-avx512")
    by = {c.distill: c for c in plan.cells if c.distill != "none" and c.method == "none"}
    assert "feature_layers ['20->29'] out of range: the student has layers 0..14" in by["f"].reason
    assert "feature_weight is 0" in by["g"].reason
    assert by["h"].status == "planned", by["h"].reason


def test_default_feature_map_follows_the_pruned_layers():
    from harness.distill.features import layer_map

    assert layer_map(None, "prune", 2, 30, 15)[14] == 29 and layer_map(None, "prune", 2, 30, 15)[7] == 14
    assert layer_map(None, "local", None, 30, 6) == {0: 4, 1: 9, 2: 14, 3: 19, 4: 24, 5: 29}
    assert layer_map({"1": "5"}, "prune", 2, 30, 15) == {1: 5}
