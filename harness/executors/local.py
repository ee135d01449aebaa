"""The default executor: one cell after another in this process (servers still run as subprocesses).

With DQBENCH_PRESTART=1 (issue #31; off by default: on an idle 2-core host it did not pay, the default run took
1,148 s with it and 1,118 s without, docs/results/2026-12-07-default-time-avx512.md), the next cell's steps up
to its artefact run, and its server starts, while this cell evaluates (harness/cell/ahead.py): after this
cell's load test, so that no measured latency shares the machine with it, and only where the next server fits
beside this one. Servers started ahead and never taken (the next cell failed before its serve step, the run was
interrupted) are stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from harness.cell import CellRun, execute_cell
from harness.cell.run import on_step_start
from harness.plan.cell import CellPlan
from harness.progress import Progress
from harness.result import CellResult
from harness.serve import prestart
from harness.settings import Settings


class LocalExecutor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def preflight(self, cells: list[CellPlan]) -> None:
        return None

    def run(self, cells: list[CellPlan], finished: Callable[[CellPlan, CellResult], None], progress: Progress) -> None:
        if not self.settings.prestart:
            for c in cells:
                finished(c, execute_cell(c, self.settings, progress))
            return
        try:
            for i, c in enumerate(cells):
                nxt = cells[i + 1] if i + 1 < len(cells) else None
                ahead: list[threading.Thread] = []
                with on_step_start(self._starter(nxt, ahead, progress)):
                    result = execute_cell(c, self.settings, progress)
                for t in ahead:  # the next cell's artefact steps hold its lock: let them finish first
                    t.join()
                prestart.discard(c.cell_id)  # started ahead for this cell and not taken: it failed before serving
                finished(c, result)
        finally:
            prestart.discard()

    def _starter(
        self, nxt: CellPlan | None, ahead: list[threading.Thread], progress: Progress
    ) -> Callable[[CellRun, str], None]:
        def on_step(run: CellRun, step: str) -> None:
            if step == "evaluate" and nxt is not None and not ahead:
                from harness.cell.ahead import start_next

                thread = start_next(nxt, self.settings, progress.note)
                if thread is not None:
                    ahead.append(thread)

        return on_step
