"""CellRun: what one attempt at a cell carries from step to step, and Step: one named step of the pipeline.

A step reads what the steps before it left on the CellRun (the model source, the artefact, the server
handle) and leaves its own: its result block, in the field of that name, typed as harness/result.CellResult
holds it (`artefact`, `serve`, `perf`, `quality` ...), and whatever a later step needs. The loop in
harness/cell/run.py owns everything around a step: timing, the server watch, the step's deadline, turning a
failure into a failed result, stopping the server.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from harness.contracts import EvaluatorContract, ModelSourceContract, ServerContract
    from harness.measure.memory_sampler import PeakSampler
    from harness.plan.cell import CellPlan
    from harness.progress import Progress
    from harness.result import Artefact, Memory, Perf, Quality, Serve
    from harness.result_engine import Speculative
    from harness.serve.base import ServerHandle
    from harness.serve.speculative import DraftModel
    from harness.settings import Settings
    from harness.spec.matrix import Limits
    from harness.workspace import CellPaths

T = TypeVar("T")

# the result's blocks a cell's steps fill, in the order they come (harness/cell/steps.py BLOCK_STEP says which
# step makes each)
BLOCKS = ("model", "distill", "artefact", "serve", "perf", "memory", "quality", "shift", "speculative")


@dataclass
class CellRun:
    cell: CellPlan
    settings: Settings
    progress: Progress
    paths: CellPaths
    host: dict[str, Any]
    started_at: str
    t0: float  # time.monotonic() at the start, for wall_s
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # the result's blocks as the steps produce them (BLOCKS), typed as harness/result.CellResult holds them;
    # validated into a CellResult once, when the attempt ends (harness/cell/run.py)
    model: dict[str, Any] | None = None  # prepare: the model source's fingerprint, as stored
    distill: dict[str, Any] | None = None  # distill: the student's lineage, training record and cost
    artefact: Artefact | None = None  # compress: what the server loads (the checkpoint itself for `none`)
    serve: Serve | None = None  # serve: the engine's command, start-up time and what it loaded
    perf: Perf | None = None  # measure: every load level
    memory: Memory | None = None  # when the attempt ends: the server's peak memory, sampled from its start
    quality: Quality | None = None  # evaluate: per-task scores and per-item scores
    shift: dict[str, Any] | None = None  # shift: distribution shift and flips against the reference
    speculative: Speculative | None = None  # speculative (a spec-decoded cell): draft, acceptance, equal output
    # what the steps hand each other besides the blocks
    source: ModelSourceContract | None = None
    evaluator: EvaluatorContract | None = None
    model_src: str = ""  # the checkpoint compress starts from: the source's, or the trained student's
    server: ServerContract | None = None
    handle: ServerHandle | None = None
    memory_sampler: PeakSampler | None = None  # samples the server's memory from its start to the cell's end
    draft_model: DraftModel | None = None  # draft (a spec-decoded cell): what its server loads as the draft
    # what must be closed when the attempt ends, however it ends (the memory sampler)
    resources: ExitStack = field(default_factory=ExitStack)

    def blocks(self) -> dict[str, Any]:
        """The blocks produced so far, by name (a failed attempt keeps those made before its failure)."""
        return {name: getattr(self, name) for name in BLOCKS if getattr(self, name) is not None}

    @property
    def served_name(self) -> str:
        return f"dq-{self.cell.cell_id}"

    def need(self, value: T | None, what: str) -> T:
        """`value`, which an earlier step must have set (a step run out of order is a bug, said plainly)."""
        if value is None:
            raise RuntimeError(f"{what} is not set: the step that makes it did not run before this one")
        return value


def _always(cell: CellPlan) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One step of a cell. `uses_server`: a failure while it runs is blamed on the server when the server
    died (its log's root cause, harness/serve/base.ServerHandle), and the server's health is checked when
    it ends. `limit`: the `limits` field that bounds its workers (`deadline`), if any. `applies`: whether
    the cell has this step at all (distill: students only)."""

    name: str
    run: Callable[[CellRun], None]
    uses_server: bool = False
    limit: Callable[[Limits], float | None] | None = None
    limit_name: str = ""
    applies: Callable[[CellPlan], bool] = _always
