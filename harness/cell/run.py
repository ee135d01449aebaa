"""The loop that runs a cell's steps (harness/cell/steps.py STEPS) and turns the attempt into a CellResult.

For every step alike: the live stage line and its timing; the workers it starts report progress to the
cell's display (`progress_to`); its own deadline (`limits.*_timeout_s`) nested in the cell's; for a step
that uses the server, the server watch: a failure while the server is dead is blamed on the server with
the root-cause line of its log, and its health is checked when the step ends.

A failing step makes a `failed` result (stage, reason, log tail) that keeps every block produced before
it, and the memory sampled up to the failure. A cell is `done` only when every step kept its promise
(`unkept_promise`). KeyboardInterrupt propagates after the server is stopped. The server is stopped
however the attempt ends.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.cell.context import CellRun, Step
from harness.cell.decide import is_skipped
from harness.cell.stage_times import describe, log_offset, step_parts
from harness.cell.steps import BLOCK_STEP, STEPS
from harness.env import environment_block
from harness.errors import DQError, StageError
from harness.locks import LockTimeout, file_lock
from harness.measure.run import planned_levels
from harness.plan.cell import CellPlan
from harness.proc import children_hold, deadline, progress_to
from harness.progress import Progress
from harness.result import CellResult, Memory, Sweep
from harness.serve.base import ServerHandle
from harness.settings import Settings
from harness.spec.context_lengths import expand
from harness.store.hosts import this_host
from harness.store.results import ResultStore
from harness.worker_ahead import workers_ahead
from harness.workspace import CellPaths


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def execute_cell(cell: CellPlan, settings: Settings, progress: Progress | None = None) -> CellResult:
    """Run the cell under its lock (`work/<cell>/.cell.lock`) and return its result; store nothing (the
    runner or the Ray driver does, so a worker that dies loses only its own cell). The lock's descriptor
    is handed to every guard the cell starts (harness/guard.py), so it stays held until the last process
    of this attempt is gone: a resume or a Ray retry after a killed runner waits for the old attempt's
    processes to be reaped instead of starting a second trainer or server beside them."""
    progress = progress or Progress(quiet=True)
    store = ResultStore(settings.results_dir)
    lock = store.work_dir(cell.cell_id) / ".cell.lock"
    try:
        return _locked(cell, settings, progress, store, lock)
    except LockTimeout as exc:  # the wait is bounded (settings.lock_wait_s): the cell fails, the matrix goes on
        return failed_doc(
            cell,
            "prepare",
            f"{exc}; waited {settings.lock_wait_s:g} s (DQBENCH_LOCK_WAIT_S)",
            settings=settings,
        )


def _locked(cell: CellPlan, settings: Settings, progress: Progress, store: ResultStore, lock: Path) -> CellResult:
    with (
        file_lock(lock, what=f"cell {cell.cell_id}", on_wait=progress.note, timeout=settings.lock_wait_s) as fd,
        children_hold(fd),
        deadline(cell.limits.cell_deadline_s, "the cell's deadline, limits.cell_deadline_s"),
    ):
        host = this_host(settings)
        run = CellRun(
            cell=cell,
            settings=settings,
            progress=progress,
            paths=CellPaths.of(store, cell.cell_id, host["host_id"]).create(),
            host=host,
            started_at=_now(),
            t0=time.monotonic(),
        )
        if cell.evaluate_only:  # the runner: only this done cell's evaluation is owed (harness/cell/resume.py)
            from harness.cell.resume import resume_steps

            return run_steps(run, resume_steps(run, store.read(cell.cell_id, host["host_id"])))
        return run_steps(run, STEPS)


def run_steps(run: CellRun, steps: list[Step]) -> CellResult:
    """Run `steps` in order over `run`; the attempt's result, done or failed."""
    run.progress.start_cell(run.cell)
    stage = steps[0].name if steps else "prepare"
    outcome: dict[str, Any]
    try:
        with workers_ahead():  # a worker started ahead by one step and not claimed by another dies with the cell
            for step in steps:
                if not step.applies(run.cell):
                    continue
                stage = step.name
                with _timed(run, step.name), _watched(run, step), _limited(run, step):
                    step.run(run)
        unkept = unkept_promise(run.cell, run.blocks())
        if unkept:
            raise StageError(*unkept)
        outcome = {"status": "done"}
    except KeyboardInterrupt:
        run.progress.note(f"interrupted during {stage}: stopping the server; nothing stored for this cell")
        raise
    except StageError as exc:
        outcome = _failed(exc.stage, str(exc), exc.log_tail)
    except DQError as exc:
        outcome = _failed(stage, str(exc), "")
    except Exception as exc:  # noqa: BLE001 - a bug in one cell must not lose the rest of the matrix
        outcome = _failed(stage, f"{type(exc).__name__}: {exc}", traceback.format_exc()[-4000:])
    finally:
        _finish_sampling(run)  # a failed cell keeps the memory measured up to its failure
        _stop_server(run)
    return _result(run, outcome)


# what an executor wants to know as a step begins (harness/executors/local.py starts the next cell's server
# when this one begins to evaluate); set with `on_step_start`
_STEP_START: ContextVar[Callable[[CellRun, str], None] | None] = ContextVar("dqbench_step_start", default=None)


@contextmanager
def on_step_start(callback: Callable[[CellRun, str], None] | None) -> Iterator[None]:
    """Call `callback(run, step name)` as each step of the cells run in this block (same thread) begins."""
    token = _STEP_START.set(callback)
    try:
        yield
    finally:
        _STEP_START.reset(token)


@contextmanager
def _timed(run: CellRun, name: str) -> Iterator[None]:
    run.progress.stage(name)
    if (callback := _STEP_START.get()) is not None:
        callback(run, name)
    t, wall, offset = time.monotonic(), time.time(), log_offset(run, name)
    try:
        # the workers this step starts (through run_worker) report their progress live
        with progress_to(None if run.progress.quiet else run.progress.update):
            yield
    finally:
        run.timings[name] = total = round(time.monotonic() - t, 3)
        # its fixed costs and its work, as new `<step>.<part>` keys (harness/cell/stage_times.py)
        parts = step_parts(run, name, wall, total, offset)
        run.timings.update(parts)
        if parts:
            run.progress.note(f"{name} {total:.1f} s: {describe(parts)}")


def _watched(run: CellRun, step: Step) -> AbstractContextManager[None]:
    return _server_watch(run.handle, step.name) if step.uses_server and run.handle is not None else nullcontext()


def _limited(run: CellRun, step: Step) -> AbstractContextManager[None]:
    if step.limit is None:
        return nullcontext()
    return deadline(step.limit(run.cell.limits), step.limit_name)


@contextmanager
def _server_watch(handle: ServerHandle, stage: str) -> Iterator[None]:
    """A step that uses the server fails, at that step, with the root cause from the server's log when
    the server exited or its engine died: the step's own error (a connection error, a level of failed
    requests) is only the symptom. Checked when the step raises and again when it ends."""
    try:
        yield
    except Exception as exc:
        # the engine's traceback may reach its log a moment after the client saw the failure
        problem = handle.health_problem(settle=2.0)
        if problem:
            raise StageError(stage, problem, handle.failure_tail()) from exc
        raise
    problem = handle.health_problem(http=True)
    if problem:
        raise StageError(stage, problem, handle.failure_tail())


def _finish_sampling(run: CellRun) -> None:
    run.resources.close()
    if run.memory_sampler is not None:
        run.memory = Memory.model_validate(run.memory_sampler.block())


def _stop_server(run: CellRun) -> None:
    if run.handle is None:
        return
    run.progress.stage("stop")
    try:
        run.handle.stop()
    except StageError as exc:  # port still held: record, the next cell picks another port
        run.warnings.append(str(exc))


def unkept_promise(cell: CellPlan, blocks: Mapping[str, Any]) -> tuple[str, str] | None:
    """(stage, why) when a step returned without producing what it promised, else None: a cell is `done`
    only with a figure for every planned load level and a score for every planned task. `blocks`: the
    result's blocks by name, typed (CellRun.blocks()) or as JSON (a result document, read leniently: a
    block is judged on what it promised, not on its other fields)."""
    perf = _json(blocks.get("perf"))
    levels = perf.get("levels", [])
    sweep = Sweep.model_validate(perf["sweep"]) if perf.get("sweep") else None
    want = planned_levels(cell.load, sweep)  # a sweep's count depends on what it found
    if len(levels) != want:
        return "measure", f"{len(levels)} of {want} planned load levels were measured"
    empty = [f"{lv['profile']} {lv['level']:g}" for lv in levels if not lv.get("completed")]
    if empty:
        return "measure", f"no request completed at load level(s) {', '.join(empty)}"
    quality = _json(blocks.get("quality"))
    if is_skipped(quality):  # --until-decided skipped it on purpose (harness/cell/decide.py): no scores owed
        return None
    tasks = quality.get("tasks", {})
    # a long-context task is scored once per length, each its own task (`dq_niah@4096`)
    for name in (key for t in cell.evaluation.tasks for key, _ in expand(t)):
        got = tasks.get(name)
        if not got or not any(v.get("value") is not None for v in got.get("metrics", {}).values()):
            return "evaluate", f"task {name} produced no score"
    if cell.evaluation.shift is not None and not blocks.get("shift"):
        return "shift", "the shift analysis produced no result"
    if getattr(cell, "draft", None) is not None and not blocks.get("speculative"):  # a spec-decoded cell (#28)
        return "speculative", "no acceptance or equal-output check was measured"
    return None


def planned(cell: CellPlan) -> dict[str, Any]:
    """The cell as planned, for its result: the runner's instructions for one attempt are not part of it."""
    if getattr(cell, "evaluate_only", False) or getattr(cell, "must_beat", None) is not None:
        cell = cell.model_copy(update={"evaluate_only": False, "must_beat": None})
    return cell.model_dump(mode="json")


def _json(block: object) -> dict[str, Any]:
    """A block as JSON: a typed block a step left, dumped; a result document's block as it is; {} for none."""
    if isinstance(block, BaseModel):
        return block.model_dump(mode="json")
    return dict(block) if isinstance(block, Mapping) else {}


def _failed(stage: str, reason: str, log_tail: str) -> dict[str, Any]:
    return {"status": "failed", "failed_stage": stage, "reason": reason, "log_tail": log_tail}


def _result(run: CellRun, outcome: dict[str, Any]) -> CellResult:
    cell = run.cell
    doc = {
        "cell_id": cell.cell_id,
        "matrix": cell.matrix,
        "label": cell.label,
        "plan": planned(cell),
        "started_at": run.started_at,
        "timings": run.timings,
        "logs": {"dir": str(run.paths.logs)},
        # as JSON, so the result validates every block once more: one a plugin built without validation fails here
        **{k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in run.blocks().items()},
        **outcome,
        "warnings": run.warnings,
        "environment": environment_block(),
        "host": run.host,
        "finished_at": _now(),
        "wall_s": time.monotonic() - run.t0,
    }
    from harness.predict.roofline import with_roofline  # the cell's limits on this host (issue #32)

    return with_roofline(validated(doc), run.settings)


def validated(doc: dict[str, Any]) -> CellResult:
    """`doc` as a CellResult. A block a plugin filled against the result contract is dropped and fails the
    step that made it (a done cell becomes failed; a failed one keeps its first failure and notes this),
    so what the other steps measured is still stored."""
    try:
        return CellResult.model_validate(doc)
    except ValidationError as exc:
        bad = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]} & set(BLOCK_STEP))
        if not bad:
            raise  # the frame itself is wrong: a bug here, not a plugin's
        why = f"the {', '.join(bad)} block(s) do not fit the result contract (harness/result.py): {exc}"[:2000]
        doc = {k: v for k, v in doc.items() if k not in bad}
        if doc.get("status") == "done":
            doc.update(_failed(BLOCK_STEP[bad[0]], why, ""))
        else:
            doc["warnings"] = [*doc.get("warnings", []), why]
        return CellResult.model_validate(doc)


def failed_doc(
    cell: CellPlan, stage: str, reason: str, log_tail: str = "", settings: Settings | None = None
) -> CellResult:
    """The result of a cell that never produced one itself (its worker died, its parent failed)."""
    return CellResult.model_validate(
        {
            "cell_id": cell.cell_id,
            "matrix": cell.matrix,
            "label": cell.label,
            "plan": planned(cell),
            **_failed(stage, reason, log_tail),
            "timings": {},
            "environment": environment_block(),
            "host": this_host(settings) if settings else None,
            "started_at": None,
            "finished_at": _now(),
            "wall_s": 0.0,
            "logs": {},
        }
    )
