"""Per-task prompt formats (harness/spec/chat.py, TaskSpec/LMEvalSpec): a task's own setting over the evaluation's,
multi-turn few-shot only under the chat template (a clear error otherwise), and no dump (so no cell id) changed by
the new fields at their defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.spec.chat import ChatFormat
from harness.spec.evaluation import LMEvalSpec, TaskSpec


def spec(tasks: list[dict], **evaluation) -> LMEvalSpec:
    return LMEvalSpec.model_validate({"tasks": tasks, **evaluation})


def test_new_task_fields_at_their_defaults_leave_the_dump_as_it_was():
    t = TaskSpec(name="gsm8k", limit=5, num_fewshot=0)
    assert t.model_dump(mode="json") == {"name": "gsm8k", "limit": 5, "num_fewshot": 0}
    explicit_none = TaskSpec(name="gsm8k", limit=5, num_fewshot=0, apply_chat_template=None, system_instruction=None)
    assert explicit_none.model_dump(mode="json") == t.model_dump(mode="json")
    on = TaskSpec(name="gsm8k", limit=5, num_fewshot=0, apply_chat_template=True)
    assert on.model_dump(mode="json")["apply_chat_template"] is True  # set: part of the id
    off = TaskSpec(name="gsm8k", apply_chat_template=False)
    assert off.model_dump(mode="json")["apply_chat_template"] is False  # explicit false differs from inherit


def test_a_task_inherits_the_evaluations_format_unless_it_sets_its_own():
    s = spec(
        [
            {"name": "gsm8k"},
            {"name": "arc_easy", "apply_chat_template": False},
            {"name": "mmlu", "fewshot_as_multiturn": False},
            {"name": "hellaswag", "system_instruction": ""},
        ],
        apply_chat_template=True,
        fewshot_as_multiturn=True,
        system_instruction="Answer briefly.",
    )
    f = {t.name: s.chat_format(t) for t in s.tasks}
    brief = "Answer briefly."
    assert f["gsm8k"] == ChatFormat(apply_chat_template=True, fewshot_as_multiturn=True, system_instruction=brief)
    # template off for the task: multi-turn is not inherited (plain prompts have no turns); the system message is
    assert f["arc_easy"] == ChatFormat(system_instruction="Answer briefly.")
    assert f["mmlu"] == ChatFormat(apply_chat_template=True, system_instruction="Answer briefly.")
    assert f["hellaswag"] == ChatFormat(apply_chat_template=True, fewshot_as_multiturn=True)  # "": no system message


def test_the_default_evaluation_is_plain_for_every_task():
    s = spec([{"name": "arc_easy"}, {"name": "gsm8k"}])
    assert {s.chat_format(t) for t in s.tasks} == {ChatFormat()}
    assert ChatFormat().model_dump() == {  # the keys and values the item journals were pinned with before
        "apply_chat_template": False,
        "fewshot_as_multiturn": False,
        "system_instruction": None,
    }


def test_one_task_chat_templated_in_a_plain_evaluation():
    s = spec([{"name": "gsm8k", "apply_chat_template": True, "fewshot_as_multiturn": True}, {"name": "arc_easy"}])
    assert s.chat_format(s.tasks[0]) == ChatFormat(apply_chat_template=True, fewshot_as_multiturn=True)
    assert s.chat_format(s.tasks[1]) == ChatFormat()


def test_multiturn_without_the_template_names_the_task_and_the_fix():
    with pytest.raises(ValidationError) as e:
        spec([{"name": "gsm8k", "fewshot_as_multiturn": True}, {"name": "arc_easy"}])
    msg = str(e.value)
    assert "evaluation.tasks[gsm8k].fewshot_as_multiturn: true" in msg
    assert "set `apply_chat_template: true` on the task" in msg
    with pytest.raises(ValidationError, match=r"tasks\[gsm8k\]"):  # the task turned the evaluation's template off
        spec([{"name": "gsm8k", "fewshot_as_multiturn": True, "apply_chat_template": False}], apply_chat_template=True)


def test_evaluation_multiturn_needs_a_templated_task():
    with pytest.raises(ValidationError, match="no task applies it"):
        spec([{"name": "gsm8k"}], fewshot_as_multiturn=True)
    # one templated task is enough: multi-turn reaches it, not the plain ones
    s = spec([{"name": "gsm8k", "apply_chat_template": True}, {"name": "arc_easy"}], fewshot_as_multiturn=True)
    assert [s.chat_format(t).fewshot_as_multiturn for t in s.tasks] == [True, False]


def test_describe():
    assert ChatFormat().describe() == "raw completion"
    fmt = ChatFormat(apply_chat_template=True, fewshot_as_multiturn=True, system_instruction="Be brief.")
    assert fmt.describe() == "chat template, few-shot as turns, system message 'Be brief.'"
