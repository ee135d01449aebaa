"""Live progress of a matrix run: matrix bar, current cell and stage, key figures as they arrive.

Rich renders it on a terminal; on a pipe or in CI it degrades to plain timestamped lines.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

STAGES = ("prepare", "compress", "serve", "measure", "evaluate", "stop")


class Progress:
    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        # on a pipe (CI, logs) rich would wrap at 80 columns
        self.console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 200)
        self.quiet = quiet
        self._rich: RichProgress | None = None
        self._matrix = self._cell = None
        self._t0 = time.monotonic()

    def _print(self, msg: str) -> None:
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.console.print(msg)
        else:
            self.console.print(f"[{time.monotonic() - self._t0:7.1f}s] {msg}", highlight=False)

    def start_matrix(self, name: str, n: int, skipped: int = 0) -> None:
        self._print(f"matrix {name}: {n} cell(s) to run, {skipped} done or infeasible")
        if self.quiet or not self.console.is_terminal:
            return
        self._rich = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=False)
        self._rich.start()
        self._matrix = self._rich.add_task(f"matrix {name}", total=n)
        self._cell = self._rich.add_task("cell", total=len(STAGES), visible=False)

    def start_cell(self, cell) -> None:  # noqa: ANN001
        self._print(f"cell {cell.cell_id} {cell.label}")
        if self._rich:
            self._rich.reset(self._cell, total=len(STAGES), visible=True, description=f"  {cell.label}")

    def stage(self, name: str) -> None:
        if self._rich:
            done = STAGES.index(name) if name in STAGES else 0
            self._rich.update(self._cell, completed=done, description=f"  {name}")
        else:
            self._print(f"  stage {name}")

    def level(self, lv) -> None:  # noqa: ANN001
        self._print(f"  {lv.profile} {lv.level:g}: {lv.output_tok_s:.1f} out tok/s, {lv.req_s:.2f} req/s, "
                    f"TTFT p50 {lv.ttft_ms['p50'] or float('nan'):.0f} ms, TPOT p50 "
                    f"{lv.tpot_ms['p50'] or float('nan'):.1f} ms, failed {lv.failed}")

    def note(self, msg: str) -> None:
        self._print(f"  {msg}")

    def end_cell(self, cell, doc: dict) -> None:  # noqa: ANN001
        status = doc["status"]
        extra = f" ({doc.get('failed_stage')}: {str(doc.get('reason'))[:300]})" if status != "done" else ""
        self._print(f"cell {cell.cell_id} {status} in {doc['wall_s']:.0f} s{extra}")
        if self._rich:
            self._rich.update(self._cell, visible=False)
            self._rich.advance(self._matrix)

    def finish_matrix(self) -> None:
        if self._rich:
            self._rich.stop()
            self._rich = None
