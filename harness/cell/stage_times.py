"""A step's time, split into its fixed costs and its work (issue #31): `<step>.<part>` keys beside the step's
own total in the result's `timings`, read from what the step left behind, never from a clock of its own.

- serve: the engine plugin's start-up phases from its log (harness/serve/startup.py): `serve.import`,
  `serve.processes` (vLLM), `serve.weights`, `serve.engine_init`, `serve.ready`; they sum to the server's
  start-up (`serve.startup_s`), which is the step's time unless the server was started ahead of its cell
  (DQBENCH_PRESTART): then `serve.ahead` is the part of it before the step began.
- evaluate: lm-eval's own log lines (timestamped to the millisecond by the worker's logging), whatever the
  worker's structure: `evaluate.start` (the step's start to the first request: worker process, imports,
  lm-eval's task index, the model, the first task's build; less the imports when the worker was started ahead
  of its job, harness/worker_ahead.py), of it `evaluate.imports` (to lm-eval's
  "Initializing ... model" line), `evaluate.setup.<task>` (between two request phases: what lm-eval did
  before the next task's requests, model and task built again, the previous task's metrics), the
  `evaluate.requests` phases themselves ("Running <type> requests" to lm-eval's next line), and
  `evaluate.finish` (the last request phase's end to the step's end: metrics, samples, process exit).
- shift: `shift.dump` (the step's start to the cell's logprob dump: worker start and the server's answers),
  `shift.dump_repeat` (the reference's second dump, its determinism check), `shift.compare` (the rest).

A part's keys sum to its step's total (up to rounding). What the logs do not show is left out, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.cell.context import CellRun

# the worker's logging format (harness/worker.py): "2026-12-06 13:23:18,490 INFO lm_eval.evaluator: ..."
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) [A-Z]+ ")
_RUNNING = re.compile(r"Running (\w+) requests")
_BUILDING = re.compile(r"Building contexts for (\S+) on rank")
_MODEL = re.compile(r"Initializing \S+ model")


def _events(text: str) -> list[tuple[float, str]]:
    """(time.time(), line) of every timestamped line (the worker logs local time)."""
    out = []
    for line in text.splitlines():
        m = _STAMP.match(line)
        if m:
            out.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp(), line))
    return out


def evaluate_parts(log_text: str, started: float, total: float) -> dict[str, float]:
    """The evaluate step's parts (module docstring) from its log since `started` (time.time()), the step
    having lasted `total` seconds. {} when lm-eval logged no request phase."""
    end = started + total
    events = [(t, line) for t, line in _events(log_text) if started - 1.0 <= t <= end + 1.0]
    runs = [i for i, (_, line) in enumerate(events) if _RUNNING.search(line)]
    if not runs:
        return {}

    def clamp(t: float) -> float:
        return min(max(t, started), end)

    out: dict[str, float] = {}
    first = clamp(events[runs[0]][0])
    out["start"] = first - started
    model = next((clamp(t) for t, line in events[: runs[0]] if _MODEL.search(line)), None)
    if model is not None:
        out["imports"] = model - started
    requests = 0.0
    prev_end = first
    for k, i in enumerate(runs):
        begin = clamp(events[i][0])
        if k:  # the set-up between the previous request phase and this one, named by the tasks built in it
            tasks = [m.group(1) for _, line in events[runs[k - 1] + 1 : i] if (m := _BUILDING.search(line))]
            key = "setup." + "+".join(dict.fromkeys(tasks)) if tasks else "setup"
            out[key] = out.get(key, 0.0) + max(0.0, begin - prev_end)
        stop = clamp(events[i + 1][0]) if i + 1 < len(events) else end
        requests += max(0.0, stop - begin)
        prev_end = max(stop, begin)
    out["requests"] = requests
    out["finish"] = max(0.0, end - prev_end)
    return {k: round(v, 3) for k, v in out.items()}


def shift_parts(shift_dir: Path, started: float, total: float) -> dict[str, float]:
    """The shift step's parts from when its dumps were written (their files' modification times)."""
    end = started + total
    marks = []
    for name, key in (("logprobs.npz", "dump"), ("logprobs-repeat.npz", "dump_repeat")):
        try:
            t = (shift_dir / name).stat().st_mtime
        except OSError:
            continue
        if started <= t <= end + 1.0:
            marks.append((min(t, end), key))
    out, prev = {}, started
    for t, key in sorted(marks):
        out[key] = round(t - prev, 3)
        prev = t
    if out:
        out["compare"] = round(end - prev, 3)
    return out


def _serve(run: CellRun, started: float, total: float, log_offset: int) -> dict[str, float]:
    if run.server is None or run.handle is None:
        return {}
    phases = getattr(run.server, "startup_phases", None)  # optional: an out-of-tree plugin may not split
    out = dict(phases(run.handle)) if phases is not None else {}
    if getattr(
        run.handle, "ahead_s", 0.0
    ):  # started ahead (harness/serve/prestart.py): this much of it before the step
        out["ahead"] = run.handle.ahead_s
    return out


def _evaluate(run: CellRun, started: float, total: float, log_offset: int) -> dict[str, float]:
    return evaluate_parts(_read_from(run.paths.log("evaluate"), log_offset), started, total)


def _shift(run: CellRun, started: float, total: float, log_offset: int) -> dict[str, float]:
    return shift_parts(run.paths.measured / "shift", started, total)


SPLITS: dict[str, Callable[[CellRun, float, float, int], dict[str, float]]] = {
    "serve": _serve,
    "evaluate": _evaluate,
    "shift": _shift,
}


def log_offset(run: CellRun, step: str) -> int:
    """Where the step's log ends before it runs (the file is appended to across attempts)."""
    try:
        return run.paths.log(step).stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def step_parts(run: CellRun, step: str, started: float, total: float, offset: int) -> dict[str, float]:
    """`{"<step>.<part>": seconds}` for a step that ran `total` seconds from `started` (time.time()); {} for
    a step with no split, or when reading it failed (a timing must never fail a cell)."""
    split = SPLITS.get(step)
    if split is None:
        return {}
    try:
        parts = split(run, started, total, offset)
    except Exception:  # noqa: BLE001 - the split is a reading of logs; the step's total stands without it
        return {}
    return {f"{step}.{k}": v for k, v in parts.items()}


def describe(parts: dict[str, float]) -> str:
    """`import 14.2 s, processes 31.0 s, ...` for the progress line."""
    return ", ".join(f"{k.split('.', 1)[1]} {v:.1f} s" for k, v in parts.items())
