"""How a task's prompts are formatted (`ChatFormat`): raw completions, or the model's own chat template, with few-shot
examples as alternating turns or not and an optional system message. Set under `evaluation:` for every task and
per task (`tasks[].apply_chat_template`, ...), a task's own setting winning; `chat_format` resolves one task's.

lm-eval applies these per `simple_evaluate`/`evaluate` call, so the evaluate worker scores tasks of different
formats in separate calls (harness/evaluate/lmeval_worker.py, harness/evaluate/sequential.py). Pure: no lm-eval."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict


class ChatFormat(BaseModel):
    """One task's resolved prompt format: the three options of lm-eval's `simple_evaluate` of the same names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None

    def describe(self) -> str:
        if not self.apply_chat_template:
            how = "raw completion"
        else:
            how = "chat template" + (", few-shot as turns" if self.fewshot_as_multiturn else "")
        return how + (f", system message {self.system_instruction!r}" if self.system_instruction else "")


class _Formats(Protocol):  # what an evaluation-level spec and a task both carry (None on a task: inherit)
    @property
    def apply_chat_template(self) -> bool | None: ...
    @property
    def fewshot_as_multiturn(self) -> bool | None: ...
    @property
    def system_instruction(self) -> str | None: ...


def chat_format(evaluation: _Formats, task: _Formats) -> ChatFormat:
    """`task`'s format: each of its own settings that is set, else the evaluation's. Multi-turn few-shot is
    inherited only where the task ends up chat-templated (a task that turns the template off is plain)."""
    template = bool(evaluation.apply_chat_template if task.apply_chat_template is None else task.apply_chat_template)
    multiturn = task.fewshot_as_multiturn
    if multiturn is None:
        multiturn = bool(evaluation.fewshot_as_multiturn) and template
    system = evaluation.system_instruction if task.system_instruction is None else task.system_instruction
    return ChatFormat(apply_chat_template=template, fewshot_as_multiturn=multiturn, system_instruction=system or None)


def chat_problems(evaluation: _Formats, tasks: Iterable[Any]) -> list[str]:
    """A task whose own `fewshot_as_multiturn: true` meets no chat template: one message naming it and the fix."""
    out = []
    for t in tasks:
        if t.fewshot_as_multiturn and not chat_format(evaluation, t).apply_chat_template:
            out.append(
                f"evaluation.tasks[{t.name}].fewshot_as_multiturn: true needs the chat template (few-shot turns are "
                f"chat messages), and apply_chat_template is false for it: set `apply_chat_template: true` on the "
                f"task (or under `evaluation:`), or remove fewshot_as_multiturn"
            )
    return out
