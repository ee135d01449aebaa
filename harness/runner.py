"""The runner: the only module that wires the stages together.

plan -> for each runnable cell (parents first): prepare model + data -> compress -> serve -> measure
-> evaluate -> store (JSON, then DuckDB) -> stop server. Done cells are skipped (resume) unless
forced. A failing cell is stored as failed with its stage, reason and log tail, and the matrix goes
on. Ctrl-C or SIGTERM stops the server group, writes nothing for the interrupted cell, and re-raises.
One writer: a lock file keeps two runs from writing the same results folder.
"""

from __future__ import annotations

import fcntl
import signal
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from harness.env import environment_block
from harness.errors import DQError, StageError
from harness.measure.memory import PeakSampler
from harness.measure.run import measure
from harness.models.sources import source_for
from harness.plan.models import CellPlan, Plan
from harness.progress import Progress
from harness.registry import compressors, evaluators, servers
from harness.settings import Settings
from harness.store import db
from harness.store.results import ResultStore


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def writer_lock(results_dir: Path):
    results_dir.mkdir(parents=True, exist_ok=True)
    f = open(results_dir / ".writer.lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DQError(f"another `harness run` is writing {results_dir} (lock {results_dir / '.writer.lock'}); "
                      f"wait for it or point DQBENCH_RESULTS elsewhere") from None
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM -> KeyboardInterrupt, so `finally` blocks stop servers when a run is killed politely."""
    def handler(signum, frame):  # noqa: ANN001, ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class Runner:
    def __init__(self, settings: Settings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.store = ResultStore(settings.results_dir)
        self.progress = progress or Progress(quiet=True)

    def run(self, plan: Plan, force: bool = False, only: set[str] | None = None) -> dict[str, str]:
        """Run every planned cell of `plan`; returns cell_id -> final status."""
        outcome: dict[str, str] = {}
        with writer_lock(self.settings.results_dir), sigterm_as_interrupt():
            # index the whole plan first, so infeasible and pending cells are visible while we work
            db.ingest(self.settings.db_path, [(c.model_dump(mode="json"), self.store.read(c.cell_id))
                                              for c in plan.cells])
            todo = []
            for c in plan.cells:
                if only and c.cell_id not in only:
                    continue
                if c.status == "infeasible":
                    outcome[c.cell_id] = "infeasible"
                elif not force and self.store.status(c.cell_id) == "done":
                    outcome[c.cell_id] = "done (cached)"
                else:
                    todo.append(c)
            self.progress.start_matrix(plan.matrix, len(todo), skipped=len(plan.cells) - len(todo))
            # plan order puts parents first; a failed parent does not block its children
            for c in todo:
                outcome[c.cell_id] = self.run_cell(c)
            self.progress.finish_matrix()
        return outcome

    def run_cell(self, cell: CellPlan) -> str:
        started, t0 = _now(), time.monotonic()
        logs = self.store.logs_dir(cell.cell_id)
        work = self.store.work_dir(cell.cell_id)
        logs.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        doc: dict = {"cell_id": cell.cell_id, "matrix": cell.matrix, "label": cell.label,
                     "plan": cell.model_dump(mode="json"), "started_at": started, "timings": {},
                     "logs": {"dir": str(logs)}}
        self.progress.start_cell(cell)
        stage = "prepare"
        handle = None
        try:
            source = source_for(cell.model, self.settings)
            evaluator = evaluators.get(cell.evaluation.kind)(cell.evaluation, self.settings)
            with self._stage(doc, "prepare"):
                source.prepare(logs / "prepare.log")
                evaluator.prepare(logs / "prepare.log")
            doc["model"] = source.fingerprint()

            stage = "compress"
            with self._stage(doc, stage):
                compressor = compressors.get(cell.method_spec.kind if cell.method_spec else "none")()
                artefact = compressor.compress(cell, source.resolve(), work, self.settings)
            doc["artefact"] = {"model": artefact.model, "dtype": artefact.dtype, "quantization": artefact.quantization,
                               "size_bytes": artefact.size_bytes, "bits_per_weight": artefact.bits_per_weight,
                               "record": artefact.record}

            stage = "serve"
            server = servers.get(cell.serving.kind)(cell.serving, self.settings.python, cell.device)
            served_name = f"dq-{cell.cell_id}"
            with self._stage(doc, stage):
                handle = server.start(artefact, served_name, logs / "server.log", cell.model.trust_remote_code)
            doc["serve"] = {"engine": handle.engine, "command": handle.command, "startup_s": handle.startup_s,
                            "loaded": handle.loaded, "port": handle.port}
            self.progress.note(f"server up in {handle.startup_s:.1f} s on port {handle.port}")

            with PeakSampler(handle.pid) as mem:
                stage = "measure"
                with self._stage(doc, stage):
                    doc["perf"] = measure(handle.base_url, served_name, cell.load, artefact.model,
                                          extra=getattr(server, "request_extras", {}),
                                          on_level=self.progress.level)
                stage = "evaluate"
                with self._stage(doc, stage):
                    doc["quality"] = evaluator.evaluate(handle.base_url, served_name, artefact.model, work,
                                                        logs / "evaluate.log")
                for name, t in doc["quality"]["tasks"].items():
                    self.progress.note(f"{name}: " + ", ".join(
                        f"{m}={v['value']:.4g}" for m, v in t["metrics"].items() if v["value"] is not None))
            doc["memory"] = {"peak_gib": mem.peak_gib, "samples": mem.samples,
                             "what": "PSS summed over the server's process tree, sampled every 0.5 s"}
            doc["status"] = "done"
        except KeyboardInterrupt:
            self.progress.note(f"interrupted during {stage}: stopping the server; nothing stored for this cell")
            raise
        except StageError as exc:
            doc.update(status="failed", failed_stage=exc.stage, reason=str(exc), log_tail=exc.log_tail)
        except DQError as exc:
            doc.update(status="failed", failed_stage=stage, reason=str(exc), log_tail="")
        except Exception as exc:  # noqa: BLE001 - a bug in one cell must not lose the rest of the matrix
            doc.update(status="failed", failed_stage=stage, reason=f"{type(exc).__name__}: {exc}",
                       log_tail=traceback.format_exc()[-4000:])
        finally:
            if handle is not None:
                self.progress.stage("stop")
                try:
                    handle.stop()
                except StageError as exc:  # port still held: record, the next cell picks another port
                    doc.setdefault("warnings", []).append(str(exc))
        doc["environment"] = environment_block()
        doc["finished_at"] = _now()
        doc["wall_s"] = time.monotonic() - t0
        self.store.write(doc)
        db.ingest(self.settings.db_path, [(doc["plan"], doc)])
        self.progress.end_cell(cell, doc)
        return doc["status"]

    @contextmanager
    def _stage(self, doc: dict, name: str):
        self.progress.stage(name)
        t = time.monotonic()
        try:
            yield
        finally:
            doc["timings"][name] = round(time.monotonic() - t, 3)

