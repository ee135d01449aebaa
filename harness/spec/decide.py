"""The question a run answers (`decide:`): the quality drop a user tolerates, on which measure, at which error
rate, with how many items per cell at most, and the deployment constraints the advisor applies (memory,
objective). The sequential evaluation (harness/evaluate/sequential.py), the runner's `--until-decided` and the
advisor read this one definition.

Not part of any cell's id: the question decides how many items are scored and in which order cells run, not
what a scored item is (harness/plan/planner.py hashes the cell's own sections only).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from harness.spec.base import Strict
from harness.spec.drop import Drop, parse_drop


class TaskMeasure(Strict):
    """One task's per-item metric (its primary one when `metric` is unset, harness/spec/metrics.py)."""

    task: str = Field(pattern=r"^[a-z0-9_][a-z0-9_\-]*$")
    metric: str | None = None


class TasksMeasure(Strict):
    """The aggregate over some of the evaluation's tasks: the mean of each one's primary per-item metric."""

    tasks: list[str] = Field(min_length=1)

    @field_validator("tasks")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({t for t in v if v.count(t) > 1})
        if dup:
            raise ValueError(f"duplicate tasks {dup}")
        return sorted(v)


# each look's boundary is a numerical integration over the looks before it (harness/decide/groupseq.py): 200
# looks take ~5 s to plan
MAX_PLANNED_LOOKS = 200


class Decide(Strict):
    # `2%` of the reference's score or `1.5pt` absolute accuracy points, as the advisor's --max-drop
    max_drop: str
    # `aggregate`: the mean over the evaluation's tasks that have per-item 0/1 scores of each one's primary
    # metric (the advisor's default measure, `avg_acc`); `{tasks: [...]}`: that mean over the tasks named (the
    # advisor's `--tasks`); or one task's metric `{task, metric}`
    measure: Literal["aggregate"] | TasksMeasure | TaskMeasure = "aggregate"
    # the chance that a verdict is wrong, over every look the sequential evaluation takes
    error_rate: float = Field(default=0.05, gt=0, le=0.2)
    # how the looks keep that error rate (docs/metrics.md): `group-sequential` plans its looks from the budget
    # (every batch_items up to max_items) and spends the error rate over them, so its last look is nearly a
    # fixed-n interval's and a cell that cannot be decided by the budget stops early (harness/decide/groupseq.py);
    # `confidence-sequence` is valid at any look, planned or not, and for any budget raised later, at the price
    # of wider intervals (harness/decide/confseq.py)
    method: Literal["group-sequential", "confidence-sequence"] = "group-sequential"
    # the most items scored per cell on the measure (each from a measured task drawn at random); a task's
    # `limit` keeps its meaning: its first `limit` documents are the population its items are drawn from
    max_items: int = Field(default=400, ge=1, le=1_000_000)
    # items scored between two looks; small batches decide sooner, each look costs a little lm-eval set-up
    batch_items: int = Field(default=40, ge=1, le=100_000)
    # order of the items: a fixed seeded shuffle of each task's documents (the same for a cell and its
    # reference, and across runs, so items scored before are reused)
    seed: int = 0
    # the advisor's constraints, read by `harness run --until-decided` and `advisor --matrix`: memory the
    # deployment has (GiB; host RAM for a CPU deployment), and what to rank cells by
    memory_gib: float | None = Field(default=None, gt=0)
    objective: Literal["throughput", "latency", "memory", "quality"] = "throughput"

    @field_validator("max_drop", mode="before")
    @classmethod
    def _drop(cls, v: object) -> str:
        return str(parse_drop(v))

    @model_validator(mode="after")
    def _looks_plannable(self) -> Decide:
        looks = -(-self.max_items // self.batch_items)
        if self.method == "group-sequential" and looks > MAX_PLANNED_LOOKS:
            raise ValueError(
                f"decide.batch_items {self.batch_items}: a group-sequential design of {looks} looks "
                f"(max_items {self.max_items}) is more than {MAX_PLANNED_LOOKS}; raise batch_items to at least "
                f"{-(-self.max_items // MAX_PLANNED_LOOKS)} or use `method: confidence-sequence`"
            )
        return self

    @model_validator(mode="after")
    def _batch_within_budget(self) -> Decide:
        # the default batch (40) simply shrinks to a smaller budget; a batch the matrix names must fit it
        if "batch_items" in self.model_fields_set and self.batch_items > self.max_items:
            raise ValueError(
                f"decide.batch_items {self.batch_items} is larger than decide.max_items {self.max_items}: "
                "a look would score past the budget; lower batch_items or raise max_items"
            )
        return self

    @property
    def drop(self) -> Drop:
        return parse_drop(self.max_drop)

    @property
    def limit(self) -> float:
        """The limit in the confidence sequence's units: a fraction of the reference's score (relative) or
        of one accuracy unit (absolute: points / 100)."""
        d = self.drop
        return d.value if d.relative else d.value / 100
