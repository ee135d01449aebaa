"""Live progress of a matrix run: matrix bar, current cell and stage, key figures as they arrive.

Rich renders it on a terminal; on a pipe or in CI it degrades to plain timestamped lines (a stage's live
progress then prints one line every `every` seconds instead of redrawing). Quiet prints nothing.

Inside a long stage the live line shows what the stage reports through harness/proc.py (`WorkerProgress`
in the child, `progress_to`/`run_worker` in the parent): done/total, a rate over the last minute and the
ETA it implies, and the figures the stage adds (training loss). The matrix bar shows elapsed time and an
ETA from the cells' estimates where the runner passes them, else from the finished cells' wall times.
Pure arithmetic (`RateMeter`, `eta_s`, `matrix_eta`, `fmt_duration`) is kept apart from the display.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

if TYPE_CHECKING:
    from harness.result import Level

STAGES = ("prepare", "compress", "serve", "measure", "evaluate", "stop")


def fmt_duration(s: float | None) -> str:
    if s is None or s != s or s == float("inf"):
        return "?"
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def eta_s(done: float, total: float | None, rate: float | None) -> float | None:
    """Seconds left at `rate` units/s; None when the total or a positive rate is unknown."""
    if total is None or not rate or rate <= 0:
        return None
    return max(0.0, (total - done) / rate)


class RateMeter:
    """Units per second over a sliding window of (time, done) samples: recent enough to follow a stage
    that speeds up (lm-eval's first requests pay for the prefix cache), long enough not to jump per line.
    A `done` that goes backwards (a new phase) starts over."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, t: float, done: float) -> None:
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((t, done))
        while len(self._samples) > 2 and t - self._samples[1][0] >= self.window:
            self._samples.popleft()

    @property
    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None


def matrix_eta(
    finished_walls: list[float],
    remaining: int,
    current_elapsed: float = 0.0,
    estimates: list[float | None] | None = None,
) -> float | None:
    """Seconds until the matrix is done. `remaining` counts the cells not finished, the running one
    included (it has run `current_elapsed` s). A cell's estimate (the plan's, in `estimates`, one per
    remaining cell, running one first) wins; without one, the mean wall time of the finished cells; with
    neither, None. The running cell counts its estimate minus what it has run, at least 0."""
    if remaining <= 0:
        return 0.0
    mean = sum(finished_walls) / len(finished_walls) if finished_walls else None
    ests = list(estimates or [])[:remaining]
    ests += [None] * (remaining - len(ests))
    per = [e if e is not None else mean for e in ests]
    known = [p for p in per if p is not None]
    if len(known) < len(per):
        return None
    return max(0.0, known[0] - current_elapsed) + sum(known[1:])


class LiveLine:
    """One stage's latest progress record with its rate and ETA, rendered as text."""

    def __init__(self) -> None:
        self.what: str | None = None
        self.rec: dict = {}
        self.meter = RateMeter()

    def update(self, rec: dict) -> None:
        if rec.get("what") != self.what:
            self.what, self.meter = rec.get("what"), RateMeter()
        self.rec = rec
        self.meter.add(float(rec.get("t") or time.time()), float(rec.get("done") or 0))

    @property
    def eta(self) -> float | None:
        if self.rec.get("eta_s") is not None:  # the stage knows better (a time-bounded training run)
            return float(self.rec["eta_s"])
        return eta_s(float(self.rec.get("done") or 0), self.rec.get("total"), self.meter.rate)

    def text(self) -> str:
        r, unit = self.rec, self.rec.get("unit") or ""
        done, total = r.get("done", 0), r.get("total")
        parts = [
            f"{r.get('what', '?')} {_num(done)}" + (f"/{_num(total)}" if total else "") + (f" {unit}" if unit else "")
        ]
        rate = self.meter.rate
        if rate:
            parts.append(f"{rate:.2f} {unit or 'units'}/s" if rate < 10 else f"{rate:.0f} {unit or 'units'}/s")
        if total or r.get("eta_s") is not None:
            parts.append(f"ETA {fmt_duration(self.eta)}")
        for k, v in r.items():
            if k not in ("what", "unit", "done", "total", "t", "eta_s"):
                parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
        return " · ".join(parts)


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


class Progress:
    def __init__(self, console: Console | None = None, quiet: bool = False, every: float = 30.0) -> None:
        # on a pipe (CI, logs) rich would wrap at 80 columns
        self.console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 200)
        self.quiet = quiet
        self.every = every  # seconds between two plain lines of a stage's progress (no terminal)
        self._rich: RichProgress | None = None
        # the rich task ids: meaningful only while self._rich is set (a terminal and a running matrix)
        self._matrix = self._cell = self._live_task = TaskID(0)
        self._t0 = time.monotonic()
        self._lock = threading.Lock()  # stage progress arrives from run_worker's tail thread
        self._live = LiveLine()
        self._live_printed = float("-inf")
        self._live_finished: tuple | None = None
        self._n = 0
        self._walls: list[float] = []
        self._estimates: dict[str, float] = {}
        self._pending: list[str] = []
        self._cell_t0: float | None = None
        self._matrix_t0: float | None = None

    def _print(self, msg: str) -> None:
        if self.quiet:
            return
        # markup off: a line is text, never rich markup (a Ray worker's `[<cell> on <node>]` prefix was read as a
        # tag and dropped whenever the cell id began with a letter; an error's `[/...]` would raise)
        if self._rich is not None:
            self._rich.console.print(msg, markup=False)
        else:
            self.console.print(f"[{time.monotonic() - self._t0:7.1f}s] {msg}", highlight=False, markup=False)

    def start_matrix(self, name: str, n: int, skipped: int = 0, estimates: dict[str, float] | None = None) -> None:
        """`estimates`: expected wall seconds per cell id to run (the plan's), for the matrix ETA."""
        self._n, self._walls, self._estimates = n, [], dict(estimates or {})
        self._pending = list(self._estimates)
        self._matrix_t0 = time.monotonic()
        self._print(
            f"matrix {name}: {n} cell(s) to run, {skipped} done or infeasible"
            + (f", about {fmt_duration(self.matrix_eta())}" if self.matrix_eta() else "")
        )
        if self.quiet or not self.console.is_terminal:
            return
        self._rich = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            transient=False,
        )
        self._rich.start()
        self._matrix = self._rich.add_task(f"matrix {name}", total=n, eta=self._eta_text())
        self._cell = self._rich.add_task("cell", total=len(STAGES), visible=False, eta="")
        self._live_task = self._rich.add_task("", total=None, visible=False, eta="")

    def matrix_eta(self) -> float | None:
        remaining = self._n - len(self._walls)
        elapsed = time.monotonic() - self._cell_t0 if self._cell_t0 is not None else 0.0
        ests = [self._estimates.get(c) for c in self._pending] if self._estimates else None
        if ests is not None and len(ests) < remaining:
            ests += [None] * (remaining - len(ests))
        return matrix_eta(self._walls, remaining, elapsed, ests)

    def _eta_text(self) -> str:
        eta = self.matrix_eta()
        return f"ETA {fmt_duration(eta)}" if eta is not None else ""

    def start_cell(self, cell) -> None:
        self._cell_t0 = time.monotonic()
        if cell.cell_id in self._pending:  # the running cell's estimate first
            self._pending.remove(cell.cell_id)
            self._pending.insert(0, cell.cell_id)
        eta = self._eta_text()
        self._print(f"cell {cell.cell_id} {cell.label}" + (f" (matrix {eta})" if eta and not self._rich else ""))
        if self._rich:
            self._rich.reset(self._cell, total=len(STAGES), visible=True, description=f"  {cell.label}")
            self._rich.update(self._matrix, eta=eta)

    def stage(self, name: str) -> None:
        self._clear_live()
        if self._rich:
            done = STAGES.index(name) if name in STAGES else 0
            self._rich.update(self._cell, completed=done, description=f"  {name}")
            self._rich.update(self._matrix, eta=self._eta_text())
        else:
            self._print(f"  stage {name}")

    def update(self, rec: dict) -> None:
        """A stage's progress record (harness/proc.py): redraw the live line, or on a pipe print it every
        `every` seconds (and when the stage reaches its total). Called from run_worker's tail thread."""
        if self.quiet:
            return
        with self._lock:
            self._live.update(rec)
            text = self._live.text()
            if self._rich:
                total = rec.get("total")
                self._rich.update(
                    self._live_task,
                    visible=True,
                    description=f"    {text}",
                    total=total or None,
                    completed=rec.get("done") or 0,
                )
                self._rich.update(self._matrix, eta=self._eta_text())
                return
            now = time.monotonic()
            finished = bool(rec.get("total")) and (rec.get("done") or 0) >= rec["total"]
            # a stage's last record can arrive twice (the tail thread, then the read at exit): print it once
            if finished and (rec.get("what"), rec.get("done")) == self._live_finished:
                return
            if now - self._live_printed >= self.every or finished:
                self._live_printed = now
                self._live_finished = (rec.get("what"), rec.get("done")) if finished else None
                self._print(f"    {text}")

    def _clear_live(self) -> None:
        with self._lock:
            self._live = LiveLine()
            self._live_printed = float("-inf")
            self._live_finished = None
            if self._rich:
                self._rich.update(self._live_task, visible=False, description="", total=None, completed=0)

    def level(self, lv: Level) -> None:
        self._print(
            f"  {lv.profile} {lv.level:g}: {lv.output_tok_s:.1f} out tok/s, {lv.req_s:.2f} req/s, "
            f"TTFT p50 {lv.ttft_ms.p50 or float('nan'):.0f} ms, TPOT p50 "
            f"{lv.tpot_ms.p50 or float('nan'):.1f} ms, failed {lv.failed}"
        )

    def note(self, msg: str) -> None:
        self._print(f"  {msg}")

    def warn(self, msg: str) -> None:
        """A warning the user must see even with --quiet (to stderr then): something is not as it should be."""
        if self.quiet:
            import sys

            print(f"WARNING: {msg}", file=sys.stderr, flush=True)
        else:
            self._print(f"  WARNING: {msg}")

    def end_cell(self, cell, doc: dict) -> None:
        status = doc["status"]
        extra = f" ({doc.get('failed_stage')}: {str(doc.get('reason'))[:300]})" if status != "done" else ""
        self._walls.append(float(doc.get("wall_s") or 0.0))
        if cell.cell_id in self._pending:
            self._pending.remove(cell.cell_id)
        self._cell_t0 = None
        self._clear_live()
        eta = self._eta_text() if len(self._walls) < self._n else ""
        elapsed = f"; matrix {fmt_duration(time.monotonic() - self._matrix_t0)} elapsed" if self._matrix_t0 else ""
        self._print(
            f"cell {cell.cell_id} {status} in {doc['wall_s']:.0f} s{extra}"
            + (f"{elapsed}, {len(self._walls)}/{self._n} cells, {eta}" if eta and not self._rich else "")
        )
        if self._rich:
            self._rich.update(self._cell, visible=False)
            self._rich.update(self._matrix, advance=1, eta=eta)

    def finish_matrix(self) -> None:
        if self._rich:
            self._rich.stop()
            self._rich = None
