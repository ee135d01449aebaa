"""execute_cell(): one cell's stages in order -- prepare, distill (students), compress, serve, measure,
evaluate, shift, stop --
returning its result document. It stores nothing: the runner (local) or the driver (Ray) does, so a
worker that dies loses only its own cell. Module-level and picklable for remote executors.

A failing stage makes a `failed` document (stage, reason, log tail) and keeps what was measured
before it. KeyboardInterrupt propagates after the server group is stopped. A server that exits or whose
engine dies fails the stage that was using it, with the root-cause line of the server's log
(`_server_watch`); a load level with too many failed requests fails `measure` (harness/measure/run.py).
"""

from __future__ import annotations

import time
import traceback
from contextlib import contextmanager
from datetime import UTC, datetime

from harness.env import environment_block
from harness.errors import DQError, StageError
from harness.evaluate.reference import compare_with_reference
from harness.locks import file_lock
from harness.measure.memory import PeakSampler
from harness.measure.run import measure
from harness.models.sources import source_for
from harness.plan.models import CellPlan
from harness.proc import children_hold, deadline, deadline_left, progress_to
from harness.progress import Progress
from harness.registry import compressors, distillers, evaluators, servers
from harness.settings import Settings
from harness.store.hosts import this_host
from harness.store.results import ResultStore


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def _stage(doc: dict, name: str, progress: Progress):
    progress.stage(name)
    t = time.monotonic()
    try:
        # the stage subprocesses this stage starts (through run_worker) report their progress live
        with progress_to(None if progress.quiet else progress.update):
            yield
    finally:
        doc["timings"][name] = round(time.monotonic() - t, 3)


@contextmanager
def _server_watch(handle, stage: str):
    """A stage that uses the server fails, at that stage, with the root cause from the server's log when
    the server exited or its engine died: the stage's own error (a connection error, a level of failed
    requests) is only the symptom. Checked when the stage raises and again when it ends."""
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


def _health_or_deadline(handle):
    """The load generator's stop check: the server's health, and the cell's deadline (the load test runs
    in this process, so no subprocess timeout covers it)."""

    def check() -> str | None:
        d = deadline_left()
        if d is not None and d[0] == 0.0:
            return f"{d[1]} reached during the load test"
        return handle.health_problem()

    return check


def unkept_promise(cell: CellPlan, doc: dict) -> tuple[str, str] | None:
    """(stage, why) when a stage returned without producing what it promised, else None: a cell is `done`
    only with a figure for every planned load level and a score for every planned task."""
    levels = doc.get("perf", {}).get("levels", [])
    want = sum(len(p.levels) if p.kind == "concurrency" else 1 for p in cell.load.profiles)
    if len(levels) != want:
        return "measure", f"{len(levels)} of {want} planned load levels were measured"
    empty = [f"{lv['profile']} {lv['level']:g}" for lv in levels if not lv.get("completed")]
    if empty:
        return "measure", f"no request completed at load level(s) {', '.join(empty)}"
    tasks = (doc.get("quality") or {}).get("tasks", {})
    for t in cell.evaluation.tasks:
        got = tasks.get(t.name)
        if not got or not any(v.get("value") is not None for v in got.get("metrics", {}).values()):
            return "evaluate", f"task {t.name} produced no score"
    if cell.evaluation.shift is not None and not doc.get("shift"):
        return "shift", "the shift analysis produced no result"
    return None


def execute_cell(cell: CellPlan, settings: Settings, progress: Progress | None = None) -> dict:
    """Run the cell under its lock (`work/<cell>/.cell.lock`). The lock's descriptor is handed to every guard
    the cell starts (harness/guard.py), so it stays held until the last process of this attempt is gone:
    a resume or a Ray retry after a killed runner waits for the old attempt's processes to be reaped
    instead of starting a second trainer or server beside them."""
    progress = progress or Progress(quiet=True)
    store = ResultStore(settings.results_dir)
    lock = store.work_dir(cell.cell_id) / ".cell.lock"
    with (
        file_lock(lock, what=f"cell {cell.cell_id}", on_wait=progress.note) as fd,
        children_hold(fd),
        deadline(cell.limits.cell_deadline_s, "the cell's deadline, limits.cell_deadline_s"),
    ):
        return _execute(cell, settings, progress, store)


def _execute(cell: CellPlan, settings: Settings, progress: Progress, store: ResultStore) -> dict:
    started, t0 = _now(), time.monotonic()
    logs = store.logs_dir(cell.cell_id)
    work = store.work_dir(cell.cell_id)
    host = this_host(settings)
    # a compressed artefact is the same on every host and is shared; what a host measures (lm-eval's
    # per-item samples, the logprob dumps the shift compares) is kept per host, so two hosts that share
    # a results folder never read each other's items
    measured = work / host["host_id"]
    logs.mkdir(parents=True, exist_ok=True)
    measured.mkdir(parents=True, exist_ok=True)
    doc: dict = {
        "cell_id": cell.cell_id,
        "matrix": cell.matrix,
        "label": cell.label,
        "plan": cell.model_dump(mode="json"),
        "started_at": started,
        "timings": {},
        "logs": {"dir": str(logs)},
    }
    progress.start_cell(cell)
    stage = "prepare"
    handle = None
    try:
        source = source_for(cell.model, settings)
        evaluator = evaluators.get(cell.evaluation.kind)(cell.evaluation, settings)
        with _stage(doc, "prepare", progress):
            source.prepare(logs / "prepare.log")
            evaluator.prepare(logs / "prepare.log")
        doc["model"] = source.fingerprint()
        model_src = source.resolve()

        if cell.student is not None:
            stage = "distill"
            with _stage(doc, stage, progress):
                doc["distill"] = _distill(cell, source, settings, logs, progress)
            model_src = doc["distill"]["path"]

        stage = "compress"
        with _stage(doc, stage, progress):
            compressor = compressors.get(cell.method_spec.kind if cell.method_spec else "none")()
            artefact = compressor.compress(cell, model_src, work, settings)
        doc["artefact"] = {
            "model": artefact.model,
            "dtype": artefact.dtype,
            "quantization": artefact.quantization,
            "size_bytes": artefact.size_bytes,
            "bits_per_weight": artefact.bits_per_weight,
            "record": artefact.record,
            "tokenizer": artefact.tokenizer,
        }

        stage = "serve"
        server = servers.get(cell.serving.kind)(cell.serving, settings.python, cell.device)
        served_name = f"dq-{cell.cell_id}"
        with _stage(doc, stage, progress):
            handle = server.start(artefact, served_name, logs / "server.log", cell.model.trust_remote_code)
        doc["serve"] = {
            "engine": handle.engine,
            "command": handle.command,
            "startup_s": handle.startup_s,
            "loaded": handle.loaded,
            "port": handle.port,
        }
        progress.note(f"server up in {handle.startup_s:.1f} s on port {handle.port}")

        # GPU memory only for a cell served on the GPU: a CPU cell on a GPU host would read other processes' use
        mem = PeakSampler(handle.pid, gpu=cell.device == "cuda")
        try:
            with mem:
                stage = "measure"
                with _stage(doc, stage, progress), _server_watch(handle, stage):
                    doc["perf"] = measure(
                        handle.base_url,
                        served_name,
                        cell.load,
                        artefact.tokenizer_src,
                        extra=getattr(server, "request_extras", {}),
                        keepalive=getattr(server, "http_keepalive", True),
                        on_level=progress.level,
                        health=_health_or_deadline(handle),
                    )
                    if doc["perf"]["stopped"]:
                        raise StageError(stage, doc["perf"]["stopped"], handle.failure_tail())
                stage = "evaluate"
                with (
                    _stage(doc, stage, progress),
                    _server_watch(handle, stage),
                    deadline(cell.limits.evaluate_timeout_s, "limits.evaluate_timeout_s"),
                ):
                    doc["quality"] = evaluator.evaluate(
                        server.scoring(handle, artefact), measured, logs / "evaluate.log"
                    )
                for name, t in doc["quality"]["tasks"].items():
                    progress.note(
                        f"{name}: "
                        + ", ".join(f"{m}={v['value']:.4g}" for m, v in t["metrics"].items() if v["value"] is not None)
                    )
                stage = "shift"
                with (
                    _stage(doc, stage, progress),
                    _server_watch(handle, stage),
                    deadline(cell.limits.shift_timeout_s, "limits.shift_timeout_s"),
                ):
                    doc["shift"] = compare_with_reference(
                        cell,
                        server.scoring(handle, artefact),
                        artefact.tokenizer_src,
                        settings,
                        measured,
                        logs / "shift.log",
                    )
                if doc["shift"] and doc["shift"].get("metrics"):
                    m = doc["shift"]["metrics"]
                    progress.note(
                        f"vs reference: KLD mean {m['kld_mean']:.4f} p99 {m['kld_p99']:.4f}, "
                        f"top-1 agreement {m['top1_agreement']:.1%}, ppl ratio {m['ppl_ratio']:.3f}"
                    )
        finally:  # a failed cell keeps the memory measured up to its failure
            doc["memory"] = mem.block()
        unkept = unkept_promise(cell, doc)
        if unkept:
            raise StageError(*unkept)
        doc["status"] = "done"
    except KeyboardInterrupt:
        progress.note(f"interrupted during {stage}: stopping the server; nothing stored for this cell")
        raise
    except StageError as exc:
        doc.update(status="failed", failed_stage=exc.stage, reason=str(exc), log_tail=exc.log_tail)
    except DQError as exc:
        doc.update(status="failed", failed_stage=stage, reason=str(exc), log_tail="")
    except Exception as exc:  # noqa: BLE001 - a bug in one cell must not lose the rest of the matrix
        doc.update(
            status="failed",
            failed_stage=stage,
            reason=f"{type(exc).__name__}: {exc}",
            log_tail=traceback.format_exc()[-4000:],
        )
    finally:
        if handle is not None:
            progress.stage("stop")
            try:
                handle.stop()
            except StageError as exc:  # port still held: record, the next cell picks another port
                doc.setdefault("warnings", []).append(str(exc))
    doc["environment"] = environment_block()
    doc["host"] = host
    doc["finished_at"] = _now()
    doc["wall_s"] = time.monotonic() - t0
    return doc


def _distill(cell: CellPlan, source, settings: Settings, logs, progress: Progress) -> dict:
    """The cell's student: trained (or found in the student cache), after the served teacher has answered
    the prompt set when the method trains on its generations. Returns the lineage block of the result."""
    from harness.distill.cost import for_student
    from harness.distill.data import TrainData
    from harness.distill.generate import read_generations

    spec = cell.student
    distiller = distillers.get(spec.kind)(spec)
    data = TrainData(settings)
    data.prepare(logs / "prepare.log")
    teacher_dir, teacher_fp = source.resolve(), source.fingerprint()
    gens, gen_info = None, None
    if distiller.needs_generations:
        gens = distiller.generations_path(teacher_fp, data.fingerprint(), settings)
        prompts = data.prompts(spec.prompts, spec.num_prompts)
        # one teacher server per answer set: a second cell that needs the same answers (a Ray neighbour)
        # waits here, then finds them written, instead of starting an idle teacher of its own
        with file_lock(
            gens.with_name(gens.name + ".serve.lock"),
            what=f"the teacher answering for {spec.name}",
            on_wait=progress.note,
        ):
            if read_generations(gens, prompts) is None and not distiller.is_built(teacher_fp, data, settings):
                gen_info = _teacher_answers(cell, teacher_dir, prompts, gens, settings, logs, progress)
    student = distiller.build(cell, teacher_dir, teacher_fp, data, settings, logs / "distill.log", gens)
    rec = student.record
    if not student.reused and rec.get("loss_curve"):
        first, last = rec["loss_curve"][0], rec["loss_curve"][-1]
        progress.note(
            f"{spec.name}: {rec['steps']} steps, {rec['tokens_seen']} tokens, loss {first['loss']:.3f} -> "
            f"{last['loss']:.3f} in {rec['train_s']:.0f} s ({rec['stopped_by']})"
        )
    fallback = cell.estimate.params if cell.estimate else rec["student_params"]
    cost = for_student(spec, rec, fallback) if distiller.trains else None
    return {
        "kind": spec.kind,
        "name": spec.name,
        "student_key": student.key,
        "path": str(student.path),
        "reused": student.reused,
        "teacher_id": cell.teacher_id,
        "teacher": teacher_fp,
        "generation": gen_info,
        "record": rec,
        "cost": cost,
    }


def _teacher_answers(
    cell: CellPlan,
    teacher_dir,
    prompts: list[str],
    gens,
    settings: Settings,
    logs,
    progress: Progress,
) -> dict:
    """Serve the teacher, have it answer `prompts` into `gens`, stop it; the generation summary."""
    from harness.compress.base import Artefact
    from harness.compress.identity import DTYPE
    from harness.distill.generate import generate

    spec = cell.student
    progress.note(f"teacher answers {spec.num_prompts} prompts ({spec.prompts}) for {spec.name}")
    server = servers.get(cell.teacher_serving.kind)(cell.teacher_serving, settings.python, cell.device)
    dtype = DTYPE[cell.compute_dtype]  # the teacher answers in the lineage's reference dtype
    teacher_name = f"dq-teacher-{cell.teacher_id or cell.cell_id}"  # one name per served teacher
    handle = server.start(
        Artefact(model=str(teacher_dir), dtype=dtype, quantization=None, size_bytes=None, bits_per_weight=16.0),
        teacher_name,
        logs / "teacher-server.log",
        cell.model.trust_remote_code,
    )
    try:
        info = generate(
            handle.base_url,
            teacher_name,
            prompts,
            gens,
            max_tokens=spec.max_new_tokens,
            temperature=spec.generation_temperature,
            seed=spec.seed,
            on_progress=None if progress.quiet else progress.update,
        )
    finally:
        handle.stop()
    progress.note(f"teacher generations: {info['completion_tokens']} tokens in {info['wall_s']} s")
    return info


def failed_doc(cell: CellPlan, stage: str, reason: str, log_tail: str = "", settings: Settings | None = None) -> dict:
    """The result of a cell that never produced one itself (its worker died, its parent failed)."""
    return {
        "cell_id": cell.cell_id,
        "matrix": cell.matrix,
        "label": cell.label,
        "plan": cell.model_dump(mode="json"),
        "status": "failed",
        "failed_stage": stage,
        "reason": reason,
        "log_tail": log_tail,
        "timings": {},
        "environment": environment_block(),
        "host": this_host(settings) if settings else None,
        "started_at": None,
        "finished_at": _now(),
        "wall_s": 0.0,
        "logs": {},
    }
