"""The matrix itself: axes, hardware budget, limits, and the cross-references between sections (a method named
on an axis must be defined, students by name ...)."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from harness.spec.base import NAME_RE, AxisPrecision, Strict
from harness.spec.decide import Decide
from harness.spec.evaluation import Evaluation
from harness.spec.kv_cache import KVCache, kv_options_set
from harness.spec.loadtest import LoadSpec
from harness.spec.methods import MethodSpec
from harness.spec.serving import SERVING_DEFAULTS, DraftSpec, LlamaCppServing, Serving, VLLMServing
from harness.spec.sources import ModelSpec
from harness.spec.students import DistillSpec


class Axes(Strict):
    precision: list[AxisPrecision] = Field(default_factory=lambda: list[AxisPrecision](["bf16"]), min_length=1)
    method: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    distill: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    # speculative drafts (`drafts:`) paired with their target cells; `none`: the targets themselves (issue #28)
    draft: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    # KV-cache precision (issue #27): engine-neutral names (harness/spec/kv_cache.py); `auto` is the engine's own
    # default and the reference every other entry is compared with
    kv_cache: list[KVCache] = Field(default_factory=lambda: list[KVCache](["auto"]), min_length=1)
    late_fields: ClassVar[tuple[str, ...]] = ("draft", "kv_cache")

    @field_validator("precision", "method", "distill", "draft", "kv_cache")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({x for x in v if v.count(x) > 1})
        if dup:
            raise ValueError(f"duplicate entries {dup}")
        return v


class HardwareSpec(Strict):
    device: Literal["cpu", "cuda", "auto"] = "auto"
    memory_gib: float | None = Field(default=None, gt=0, description="budget the plan checks cells against")
    # what an hour of this host costs ($): cost per correct answer (advisor/cost.py) where no --gpu-price is
    # given. Not part of any cell's identity (a price decides what a figure costs, not what is measured).
    price_per_hour: float | None = Field(default=None, gt=0, description="$ per hour of this host")
    late_fields: ClassVar[tuple[str, ...]] = ("price_per_hour",)


_UNITS = re.compile(r"^\d+(\.\d+)?$")

# No time limit may exceed a week: past that a run is stuck, not slow.
MAX_LIMIT_S = 7 * 24 * 3600


class Limits(Strict):
    """Wall-clock limits of a cell's stages, read by the cell executor (harness/cell/).

    Not part of any cell's identity: a limit decides whether a measurement finishes, not what it measures,
    so changing one re-runs nothing (harness/plan/planner.py keeps it out of the id)."""

    cell_deadline_s: float | None = Field(
        default=None, gt=0, le=MAX_LIMIT_S, description="the whole cell, every stage; None: no overall deadline"
    )
    evaluate_timeout_s: float = Field(default=6 * 3600, gt=0, le=MAX_LIMIT_S, description="the lm-eval stage")
    shift_timeout_s: float = Field(
        default=2 * 3600, gt=0, le=MAX_LIMIT_S, description="the logprob dumps of the shift comparison"
    )


class Matrix(Strict):
    schema_version: Literal[1] = 1
    name: str = Field(pattern=NAME_RE)
    description: str = ""
    models: list[ModelSpec] = Field(min_length=1)
    axes: Axes = Field(default_factory=Axes)
    methods: dict[str, MethodSpec] = Field(default_factory=dict)
    students: list[DistillSpec] = Field(default_factory=list)
    drafts: dict[str, DraftSpec] = Field(default_factory=dict)  # speculative drafts by name (axes.draft)
    serving: Serving = Field(default_factory=VLLMServing)
    # Settings for the other engines some methods need (GGUF cells are served by llama.cpp); an engine
    # not listed here runs with its defaults. Each cell records the engine that served it.
    extra_serving: list[Serving] = Field(default_factory=list)
    load: LoadSpec
    evaluation: Evaluation
    hardware: HardwareSpec = Field(default_factory=HardwareSpec)
    limits: Limits = Field(default_factory=Limits)
    # the question a run answers (harness/spec/decide.py): items are scored until it is decided. Outside every
    # cell's id (harness/plan/planner.py carries it into each CellPlan beside `limits`)
    decide: Decide | None = None
    late_fields: ClassVar[tuple[str, ...]] = ("limits", "decide", "drafts")

    @model_validator(mode="after")
    def _references(self) -> "Matrix":
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"models: duplicate names {dup}")
        for m in self.axes.method:
            if m != "none" and m not in self.methods:
                raise ValueError(
                    f"axes.method: {m!r} has no entry under `methods:`; add `methods: {{{m}: {{kind: ...}}}}` "
                    f"or remove it (defined: {sorted(self.methods) or 'none'})"
                )
        kinds = [self.serving.kind] + [s.kind for s in self.extra_serving]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"extra_serving: one entry per engine kind, got {kinds}")
        student_names = [s.name for s in self.students]
        dup = sorted({n for n in student_names if student_names.count(n) > 1})
        if dup:
            raise ValueError(
                f"students: duplicate names {dup}; each student needs its own name (axes.distill "
                "picks students by name)"
            )
        for d in self.axes.distill:
            if d != "none" and d not in student_names:
                raise ValueError(
                    f"axes.distill: {d!r} is not a student under `students:` (defined: {student_names or 'none'})"
                )
        for s in self.students:
            for m in s.methods or []:
                if m not in self.methods:
                    raise ValueError(
                        f"students[{s.name}].methods: {m!r} has no entry under `methods:` "
                        f"(defined: {sorted(self.methods) or 'none'})"
                    )
        self._draft_references(student_names)
        self._kv_cache_axis()
        return self

    def _kv_cache_axis(self) -> None:
        """A KV entry other than `auto` needs the `auto` cells (its reference) and is the one place the cache dtype
        is set: a serving option that sets it too would make the axis say one thing and the engine run another."""
        if self.axes.kv_cache == ["auto"]:
            return
        if "auto" not in self.axes.kv_cache:
            raise ValueError(
                f"axes.kv_cache: {self.axes.kv_cache} has no `auto`; add it (e.g. [auto, "
                f"{self.axes.kv_cache[0]}]): a KV cell's drop, KL and flips are measured against the auto-KV cell"
            )
        for s in (self.serving, *self.extra_serving):
            args = s.engine_args if s.kind == "vllm" else s.extra_args
            keys = kv_options_set(s.kind, args)
            if keys:
                where = "engine_args" if s.kind == "vllm" else "extra_args"
                raise ValueError(
                    f"the `kind: {s.kind}` serving entry's {where} sets {keys} while axes.kv_cache is "
                    f"{self.axes.kv_cache}; remove {keys} from {where} (axes.kv_cache sets the KV-cache dtype of "
                    "each cell)"
                )

    def _draft_references(self, student_names: list[str]) -> None:
        """`axes.draft` names drafts under `drafts:`; a draft's student, method and targets exist."""
        for d in self.axes.draft:
            if d != "none" and d not in self.drafts:
                raise ValueError(
                    f"axes.draft: {d!r} has no entry under `drafts:` (defined: {sorted(self.drafts) or 'none'})"
                )
        for name, spec in self.drafts.items():
            where = f"drafts.{name}"
            if spec.student is not None and spec.student not in student_names:
                raise ValueError(
                    f"{where}.student: {spec.student!r} is not a student under `students:` "
                    f"(defined: {student_names or 'none'})"
                )
            if spec.method != "none" and spec.method not in self.methods:
                raise ValueError(
                    f"{where}.method: {spec.method!r} has no entry under `methods:` "
                    f"(defined: {sorted(self.methods) or 'none'}, or none)"
                )
            for t in spec.targets or []:
                if t != "none" and t not in self.axes.method:
                    raise ValueError(
                        f"{where}.targets: {t!r} is not on axes.method {self.axes.method}; a draft is paired with "
                        "the teacher's cells of these methods"
                    )

    def serving_for(self, engine: str) -> VLLMServing | LlamaCppServing:
        """The serving spec for `engine`: `serving`, an `extra_serving` entry, or that engine's defaults."""
        for s in (self.serving, *self.extra_serving):
            if s.kind == engine:
                return s
        default: VLLMServing | LlamaCppServing = SERVING_DEFAULTS[engine]()
        return default
