"""The next cell's server, started while this cell evaluates (issue #31; DQBENCH_PRESTART=1).

`start_next(cell, settings)` runs the cell's own steps up to its artefact (prepare, distill, compress: the
same step functions, over a quiet CellRun) under the cell's lock, then starts its server ahead
(harness/serve/prestart.py). Nothing is stored: when the cell itself runs, its prepare and compress steps
find what this made (the model, the artefact: each is cached by content), and its serve step takes the
server. Anything that goes wrong here is left for the cell itself to meet and report.

Refused (None returned as the reason to skip is noted) when the cell would train a student first (training
beside an evaluation: minutes of CPU, or GPU memory the running server holds), or when its server does not
fit beside the running one (`prestart.room_for`).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from harness.cell.context import CellRun
from harness.cell.steps import STEPS
from harness.locks import file_lock
from harness.plan.cell import CellPlan
from harness.proc import children_hold
from harness.progress import Progress
from harness.registry import servers
from harness.serve import prestart
from harness.serve.base import EngineServer
from harness.settings import Settings
from harness.store.hosts import this_host
from harness.store.results import ResultStore
from harness.workspace import CellPaths

BEFORE_SERVE = ("prepare", "distill", "compress")


def why_not(cell: CellPlan, settings: Settings) -> str | None:
    """Why the cell's server may not start ahead now (None: it may)."""
    if cell.student is not None and not _student_built(cell, settings):
        return "it trains its student first"
    return prestart.room_for(cell, cell.serving)


def _student_built(cell: CellPlan, settings: Settings) -> bool:
    """Whether the cell's student is in the student cache already (a distiller that does not train derives
    it in seconds); any doubt reads as not built."""
    try:
        from harness.distill.data import TrainData
        from harness.models.sources import source_for
        from harness.registry import distillers

        spec = cell.student
        if spec is None:
            return True
        distiller = distillers.get(spec.kind)(spec)
        if not distiller.trains:
            return True
        teacher = source_for(cell.model, settings).fingerprint().model_dump(mode="json")
        return bool(distiller.is_built(teacher, TrainData(settings), settings))
    except Exception:  # noqa: BLE001 - not knowing is a reason to wait, not an error
        return False


def start_next(cell: CellPlan, settings: Settings, note) -> threading.Thread | None:
    """Begin the cell's steps up to its server in a background thread; None (with `note`d reason) if not."""
    reason = why_not(cell, settings)
    if reason is not None:
        note(f"next cell's server not started ahead: {reason}")
        return None
    thread = threading.Thread(target=_prepare_and_start, args=(cell, settings, note), daemon=True, name="ahead")
    thread.start()
    return thread


def _prepare_and_start(cell: CellPlan, settings: Settings, note) -> None:
    t0 = time.monotonic()
    store = ResultStore(settings.results_dir)
    try:
        with file_lock(store.work_dir(cell.cell_id) / ".cell.lock", what=f"cell {cell.cell_id}") as fd:
            host = this_host(settings)
            run = CellRun(
                cell=cell,
                settings=settings,
                progress=Progress(quiet=True),
                paths=CellPaths.of(store, cell.cell_id, host["host_id"]).create(),
                host=host,
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                t0=t0,
            )
            with children_hold(fd):
                for step in STEPS:
                    if step.name in BEFORE_SERVE and step.applies(cell):
                        step.run(run)
        server = servers.get(cell.serving.kind)(cell.serving, settings.python, cell.device)
        if not isinstance(server, EngineServer):  # an out-of-tree engine on its own lifecycle
            note(f"next cell {cell.cell_id}: its engine plugin cannot start ahead")
            return
        server.kv_cache = cell.kv_cache  # as the cell's serve step sets it: the same command line
        artefact = run.need(run.artefact, "the artefact")
        prestart.start_ahead(
            server, artefact, run.served_name, run.paths.log("server"), cell.model.trust_remote_code, cell.cell_id
        )
        note(f"next cell {cell.cell_id}: artefact ready in {time.monotonic() - t0:.0f} s, its server starting ahead")
    except Exception as exc:  # noqa: BLE001 - the cell meets it again when it runs, and reports it there
        note(f"next cell {cell.cell_id}: not started ahead ({type(exc).__name__}: {exc})"[:300])
