"""`evaluation.tasks[*].context_lengths`: what the spec accepts, the one error per mistake, per-length task keys, and
that a matrix without the field keeps its cells' ids."""

import pytest
from pydantic import ValidationError

from harness.spec import load_matrix
from harness.spec.context_lengths import expand, length_task, longest, split_length_task
from harness.spec.evaluation import LMEvalSpec, TaskSpec
from tests.conftest import MATRICES


def test_length_task_keys_round_trip():
    assert length_task("dq_niah", 4096) == "dq_niah@4096"
    assert split_length_task("dq_niah@4096") == ("dq_niah", 4096)
    assert split_length_task("arc_easy") == ("arc_easy", None)
    assert split_length_task("pass@1") == ("pass", 1)  # a key, not a metric: only task names are split
    t = TaskSpec(name="dq_niah", context_lengths=[1024, 2048], limit=3)
    assert [k for k, _ in expand(t)] == ["dq_niah@1024", "dq_niah@2048"]
    assert all(spec is t for _, spec in expand(t))  # the limit is per length
    assert expand(TaskSpec(name="arc_easy")) == [("arc_easy", TaskSpec(name="arc_easy"))]
    assert longest([TaskSpec(name="arc_easy"), t]) == ("dq_niah", 2048)
    assert longest([TaskSpec(name="arc_easy")]) is None


def test_default_task_dump_is_unchanged_so_cell_ids_stay():
    assert "context_lengths" not in TaskSpec(name="arc_easy").model_dump(mode="json")
    dumped = TaskSpec(name="dq_niah", context_lengths=[1024]).model_dump(mode="json")
    assert dumped["context_lengths"] == [1024]


@pytest.mark.parametrize(
    ("task", "needle"),
    [
        ({"name": "arc_easy", "context_lengths": [1024]}, "only dq_niah is sized per context length"),
        ({"name": "dq_niah"}, "add `context_lengths: [1024, 2048, 4096]`"),
        ({"name": "dq_niah", "context_lengths": [128, 1024]}, "[128] below 256 tokens"),
        ({"name": "dq_niah", "context_lengths": [1024, 1024]}, "[1024] listed twice"),
    ],
)
def test_a_wrong_context_lengths_is_one_error_naming_field_value_and_fix(task, needle):
    with pytest.raises(ValidationError) as err:
        TaskSpec(**task)
    assert needle in str(err.value)
    assert f"evaluation.tasks[{task['name']}]" in str(err.value)


def test_a_length_over_max_length_is_refused_with_the_fix():
    with pytest.raises(ValidationError) as err:
        LMEvalSpec(tasks=[{"name": "dq_niah", "context_lengths": [1024, 4096]}], max_length=2048)
    msg = str(err.value)
    assert "context_lengths: [4096] exceed evaluation.max_length 2048" in msg
    assert "raise evaluation.max_length to >= 4096" in msg
    LMEvalSpec(tasks=[{"name": "dq_niah", "context_lengths": [1024, 2048]}], max_length=2048)


def test_the_shipped_long_context_matrix_reads():
    m = load_matrix(MATRICES / "smollm2-long-context.yaml")
    (task,) = m.evaluation.tasks
    assert task.name == "dq_niah" and len(task.context_lengths or []) >= 3
    assert max(task.context_lengths or []) <= m.serving.max_model_len
