"""Plan data: CellPlan (one grid point, everything a stage needs) and Plan (all cells + skipped combos)."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar, Literal

from pydantic import Field

from harness.spec.base import Strict
from harness.spec.decide import Decide
from harness.spec.evaluation import Evaluation
from harness.spec.loadtest import LoadSpec
from harness.spec.matrix import Limits
from harness.spec.methods import MethodSpec
from harness.spec.serving import Serving
from harness.spec.sources import ModelSpec
from harness.spec.students import DistillSpec


class MemoryEstimate(Strict):
    """Estimated memory a served cell needs on its device, in GiB (an estimate: `basis` says how).

    Computed by the one memory model, harness/serving_memory.py (via harness/plan/memory_estimate.py): weights by
    module at the precision the method leaves them (so `bits_per_weight` = weight bytes x 8 / params, with
    16-bit embeddings, lm_head and scales in it), KV cache by its dtype, the engine's default overhead. The
    field names are what stored plans hold; they are read back unchanged.
    """

    weights_gib: float
    kv_cache_gib: float
    overhead_gib: float
    total_gib: float
    params: int
    bits_per_weight: float
    basis: str = Field(description="how it was computed")


class TrainMemoryEstimate(Strict):
    """Estimated peak memory of training a cell's student on its device, in GiB (harness/distill/training_memory.py;
    `basis` gives every number). `total_gib` is the larger of a training step (`step_gib`: the parts
    before it, with the runtime overhead) and the teacher pass before and after training."""

    device: str
    student_params: int
    teacher_params: int
    weights_gib: float
    gradients_gib: float
    optimizer_gib: float
    activations_gib: float
    logits_gib: float
    teacher_gib: float
    step_gib: float
    teacher_pass_gib: float
    total_gib: float
    budget_gib: float | None = Field(default=None, description="what it was checked against")
    basis: str


class MustBeat(Strict):
    """`--until-decided`: the current decided winner's objective value (harness/decide/priority.py); a cell whose
    measured value cannot beat it skips its evaluation (it cannot change the answer)."""

    objective: str
    value: float
    higher_is_better: bool
    winner: str  # the winner's cell id and label, for the reason


ComputeDtype = Literal["bf16", "fp16", "fp32"]
# the uncompressed precisions, as the dtype a cell computes in
COMPUTE_DTYPES: dict[str, ComputeDtype] = {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}


class CellPlan(Strict):
    cell_id: str
    matrix: str
    model: ModelSpec
    precision: str
    method: str
    method_spec: MethodSpec | None = None
    distill: str
    student: DistillSpec | None = None
    serving: Serving
    load: LoadSpec
    evaluation: Evaluation
    device: Literal["cpu", "cuda"]
    parent_id: str | None = None
    # a student's lineage: the teacher's uncompressed cell, and how the teacher is served when it must
    # answer prompts (sft / gkd). Not part of the cell's identity.
    teacher_id: str | None = None
    teacher_serving: Serving | None = None
    status: Literal["planned", "infeasible"] = "planned"
    reason: str | None = None  # the reasons below joined, for one-line displays and the DuckDB column
    reasons: list[str] = Field(default_factory=list)
    estimate: MemoryEstimate | None = None
    # the dtype the cell computes in (a compressed cell's activations): its lineage's reference dtype
    # None: the engine picks (llama.cpp computes in its own types; load-time/legacy quantizers fix theirs)
    compute_dtype: ComputeDtype | None = "bf16"
    dtype_note: str | None = None  # how `auto` was resolved on the planning host (measured figures)
    host_id: str | None = None  # the host it was planned for; not part of the id (results are keyed by both)
    # config facts of the served model (layers, KV heads ...): lets the advisor size KV caches for any
    # context length and concurrency without loading anything. Not part of the cell's identity.
    arch: dict | None = None
    # the matrix's wall-clock limits for this cell's stages (harness/cell/ enforces them). Not part of the
    # cell's identity: a limit decides whether a measurement finishes, not what it measures. Left out of
    # dumps at its default, so stored plans of cells planned before it existed read the same.
    limits: Limits = Field(default_factory=Limits)
    # a trained student's training-memory estimate (every cell of that student needs it trained). Not part
    # of the cell's identity; left out of dumps when None, so stored plans of other cells read the same.
    train_estimate: TrainMemoryEstimate | None = None
    # the matrix's `decide:` question (harness/spec/decide.py): the cell's quality is scored sequentially until
    # it is decided, within `decide.max_items` items. Not part of the cell's identity (it decides how many
    # items are scored, not what an item's score is); left out of dumps when None.
    decide: Decide | None = None
    # the runner's instruction for this attempt, not a fact of the cell: re-run only the evaluation of a cell
    # done on this host whose question is not settled (its stored perf, memory and serve blocks stand,
    # harness/cell/resume.py); `--until-decided`'s bar the cell's measured objective must clear for its
    # evaluation to run (harness/decide/priority.py). Neither is part of the id; left out of dumps unset.
    evaluate_only: bool = False
    must_beat: MustBeat | None = None
    # a spec-decoded cell (issue #28): the target cell's configuration served with this draft; its id is the
    # target's identity plus the draft's (harness/plan/speculative.py). None: no draft (left out of dumps).
    draft: DraftPlan | None = None
    # $ per hour of the host (hardware.price_per_hour) for cost per correct answer; not part of the identity
    price_per_hour: float | None = None
    # the KV-cache precision (axes.kv_cache, harness/spec/kv_cache.py); `auto`, the engine's default, is left out
    # of dumps and of the id, so cells planned before the axis existed read and hash the same
    kv_cache: str = "auto"
    late_fields: ClassVar[tuple[str, ...]] = (
        "limits",
        "train_estimate",
        "decide",
        "evaluate_only",
        "must_beat",
        "draft",
        "price_per_hour",
        "kv_cache",
    )

    @property
    def label(self) -> str:
        base = f"{self.model.name}/{self.precision}/{self.method}/{self.distill}"
        if self.kv_cache != "auto":
            base += f"/kv-{self.kv_cache}"
        return f"{base}+{self.draft.name}" if self.draft is not None else base


class DraftPlan(Strict):
    """The draft of a spec-decoded cell, as planned (harness/plan/speculative.py): the target cell it speeds up,
    how many tokens it drafts, and the draft model: a student cell of the matrix (`cell`, prepared, trained and
    compressed inside the spec cell's `draft` step, in that cell's own work folder so the grid's cell shares it)
    or a hub/local model (`source`). `alpha_from`: the cell whose measured top-1 agreement predicts acceptance
    (the student's uncompressed cell: its shift is against the teacher)."""

    name: str
    target_id: str
    tokens: int
    min_tokens: int | None = None
    cell: CellPlan | None = None
    source: ModelSpec | None = None
    alpha_from: str | None = None
    in_grid: bool = False  # whether `cell` is also a cell of the grid (else it is built for the draft alone)


CellPlan.model_rebuild()


class Plan(Strict):
    matrix: str
    cells: list[CellPlan]
    skipped: list[str] = Field(default_factory=list, description="grid points that are not cells, and why")
    host: dict | None = Field(default=None, description="HostCaps.host_block() of the host planned for")
    warnings: list[str] = Field(default_factory=list, description="what runs but is likely a mistake")
    grants: list[str] = Field(
        default_factory=list,
        description="what the command line allowed this matrix beyond measuring (harness/plan/trust.py): engine "
        "options that load code, connect or touch files, repository code; and the matrix's "
        "evaluation.allow_code_execution (model-written programs run in the sandbox, with its isolation)",
    )

    def by_id(self) -> dict[str, CellPlan]:
        return {c.cell_id: c for c in self.cells}


def content_id(payload: dict) -> str:
    """Stable id of a cell: sha256 of the canonical JSON of what determines its results.

    The matrix name, the host and the status are not part of it: the same cell in two matrices is one
    cell, and its id must not change when it becomes infeasible on another machine.
    """
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
