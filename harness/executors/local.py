"""The default executor: one cell after another in this process (servers still run as subprocesses)."""

from __future__ import annotations

from collections.abc import Callable

from harness.cell import execute_cell
from harness.plan.cell import CellPlan
from harness.progress import Progress
from harness.result import CellResult
from harness.settings import Settings


class LocalExecutor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def preflight(self, cells: list[CellPlan]) -> None:
        return None

    def run(self, cells: list[CellPlan], finished: Callable[[CellPlan, CellResult], None], progress: Progress) -> None:
        for c in cells:
            finished(c, execute_cell(c, self.settings, progress))
