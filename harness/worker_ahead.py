"""A worker started before its job is known (issue #31): it imports what its job type will need while a slower
start runs beside it, then waits for the job.

Why: a vLLM server takes 30-40 s to start on a 2-core host, and most of that is one process at a time importing
vLLM and torch, so one core idles. The evaluate worker that follows spent its first ~7 s doing the same kind of
thing (Python, lm-eval, torch, transformers). Started ahead, that part runs on the idle core.

- Parent side: `start_ahead(job_type, log_path, settings, env=...)`, inside a `workers_ahead()` scope (the cell
  loop opens one per cell), spawns `python -m harness.worker --ahead MODULES` under the guard, with the job and
  record paths `run_worker` would have used. `run_worker` for the same job type, log and environment hands its
  job to that process (`claim`) instead of starting one. A different environment (the cell was scored
  in-process after all), or a worker that died while it waited, is cancelled and the job runs in a fresh one as
  before. Whatever is unclaimed when the scope ends is killed.
- Child side: `wait_for_job` imports the job type's `warm_imports`, then, given a hint (`start_ahead(...,
  hint=)`: part of the job to come, written beside the job's path before the spawn), runs the job type's
  `warm_with` on it (the evaluate worker builds its tasks: harness/evaluate/lmeval_worker.py `warm`), writes
  `<record>.warm`, and waits for the job file (written atomically by the parent), then the worker runs as any
  other (harness/worker.py). Preparing is best effort: a failure is logged, and the job builds what it needs.
- `settle_ahead`: a step that must run on a quiet host (the load test) first waits until every worker started
  ahead has finished its imports, or cancels those that have not after a bound.

Files, not a pipe, for the same reason as every worker (harness/proc.py's docstring). No heavy imports here.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.jobs import Job, resolve
from harness.proc import PROGRESS_ENV, child_env, kill_group, progress_sink, spawn, write_json_atomic
from harness.settings import Settings

WARM_SUFFIX = ".warm"
_POLL_S = 0.05


@dataclass
class WorkerAhead:
    """One worker process waiting for its job; its paths are the ones `run_worker` then uses."""

    job_type: type[Job[Any]]
    log_path: Path
    env: dict[str, str]  # what the caller asked for besides child_env's own (compared at claim)
    credentials: bool
    python: str
    proc: subprocess.Popen[bytes]
    base: Path  # the unique name the job, record and marker files derive from
    progress_path: Path | None  # the child's DQBENCH_PROGRESS_FILE, when a progress sink was open
    spawned_at: float

    @property
    def job_path(self) -> Path:
        return _job_path(self.base)

    @property
    def record_path(self) -> Path:
        return _record_path(self.base)

    @property
    def warm_path(self) -> Path:
        return self.record_path.with_name(self.record_path.name + WARM_SUFFIX)

    @property
    def hint_path(self) -> Path:
        return _hint_path(self.base)

    def is_warm(self) -> bool:
        return self.warm_path.exists()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_warm(self, timeout: float) -> bool:
        """True once the child has imported what it was told to; False when it died or `timeout` passed."""
        end = time.monotonic() + timeout
        while True:
            if self.is_warm():
                return self.alive()
            if not self.alive() or time.monotonic() >= end:
                return False
            time.sleep(_POLL_S)

    def cancel(self) -> None:
        """Kill the process group and remove its files (an unclaimed worker leaves nothing behind)."""
        kill_group(self.proc, grace=2.0)
        self.remove_files()

    def close(self) -> None:
        """After its job: the files gone, and the process too if the job never reached it."""
        if self.alive():
            kill_group(self.proc, grace=2.0)
        self.remove_files()

    def remove_files(self) -> None:
        for p in (self.base, self.job_path, self.record_path, self.warm_path, self.hint_path, self.progress_path):
            if p is not None:
                p.unlink(missing_ok=True)


def _job_path(base: Path) -> Path:
    return base.with_name(base.name + ".job.json")


def _record_path(base: Path) -> Path:
    return base.with_name(base.name + ".record.json")


def _hint_path(base: Path) -> Path:
    return base.with_name(base.name + ".hint.json")


_AHEAD: ContextVar[dict[tuple[str, str], WorkerAhead] | None] = ContextVar("dqbench_workers_ahead", default=None)


@contextmanager
def workers_ahead() -> Iterator[None]:
    """A scope (one cell) in which workers may be started ahead; those not claimed by its end are killed."""
    pending: dict[tuple[str, str], WorkerAhead] = {}
    token = _AHEAD.set(pending)
    try:
        yield
    finally:
        _AHEAD.reset(token)
        for w in list(pending.values()):
            w.cancel()
        pending.clear()


def _key(job_type: type[Job[Any]], log_path: Path) -> tuple[str, str]:
    return job_type.type_path(), str(log_path)


def start_ahead(
    job_type: type[Job[Any]],
    log_path: Path,
    settings: Settings,
    *,
    env: dict[str, str] | None = None,
    credentials: bool = False,
    hint: dict[str, Any] | None = None,
) -> WorkerAhead | None:
    """Spawn a worker for a `job_type` job that `run_worker(job, log_path, settings, env=env)` will run later;
    with `hint` (JSON-able: what the job type's `warm_with` prepares from), it also prepares. None outside a
    `workers_ahead()` scope, for a job type that names nothing to import, or when one is already waiting for
    the same job type and log."""
    pending = _AHEAD.get()
    key = _key(job_type, log_path)
    if pending is None or not job_type.warm_imports or key in pending:
        return None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=log_path.parent, prefix=f".{log_path.stem}.{job_type.short_name()}.", suffix="")
    os.close(fd)  # the name is ours; the job file itself must not exist until the job does
    base = Path(name)
    extra = dict(env or {})
    progress = None
    if progress_sink() is not None:  # the same file name run_module would give it
        progress = log_path.parent / f".{log_path.stem}.{job_type.short_name()}.progress.jsonl"
        progress.write_bytes(b"")
    job_path, record_path = _job_path(base), _record_path(base)
    args = ["--job", str(job_path), "--record", str(record_path), "--ahead", ",".join(job_type.warm_imports)]
    if hint is not None and job_type.warm_with:
        write_json_atomic(_hint_path(base), hint)
        args += ["--warm-with", job_type.warm_with, "--hint", str(_hint_path(base))]
    child = {**extra, **({PROGRESS_ENV: str(progress)} if progress is not None else {})}
    with open(log_path, "ab") as log:
        proc = spawn(
            [settings.python, "-m", "harness.worker", *args], log=log, env=child_env(child, credentials=credentials)
        )
    w = WorkerAhead(job_type, log_path, extra, credentials, settings.python, proc, base, progress, time.time())
    pending[key] = w
    return w


def claim(
    job_type: type[Job[Any]], log_path: Path, env: dict[str, str], credentials: bool, python: str
) -> WorkerAhead | None:
    """The worker started ahead for this job type and log, when it can run this job (same interpreter,
    environment and credentials, still alive); a mismatched or dead one is cancelled, and None returned."""
    pending = _AHEAD.get()
    if pending is None:
        return None
    w = pending.pop(_key(job_type, log_path), None)
    if w is None:
        return None
    if w.env != env or w.credentials != credentials or w.python != python or not w.alive():
        w.cancel()
        return None
    return w


def settle_ahead(timeout: float) -> list[str]:
    """Wait until every worker started ahead in this scope has done its imports (so what follows runs on a quiet
    host); one that is not warm within `timeout` seconds, or died, is cancelled (its job then runs in a fresh
    worker). Notes for the cell's progress line."""
    pending = _AHEAD.get() or {}
    notes = []
    end = time.monotonic() + timeout
    for key, w in list(pending.items()):
        if not w.wait_warm(max(0.0, end - time.monotonic())):
            pending.pop(key, None)
            w.cancel()
            notes.append(f"{w.job_type.short_name()} started ahead was not ready in {timeout:g} s: cancelled")
    return notes


def wait_for_job(
    modules: str, job_path: Path, record_path: Path, warm_with: str | None = None, hint_path: Path | None = None
) -> None:
    """The child's side: import `modules` (comma-separated), prepare from the hint (`warm_with(hint)`), say so
    with the marker file, wait for the job. The parent's death ends this process too (the guard takes its group
    down)."""
    for m in filter(None, modules.split(",")):
        importlib.import_module(m)
    if warm_with and hint_path is not None:
        t0 = time.monotonic()
        try:
            resolve(warm_with)(json.loads(hint_path.read_text()))
            print(f"prepared ahead of the job ({warm_with}, {time.monotonic() - t0:.1f} s)", flush=True)
        except Exception as exc:  # noqa: BLE001 - best effort: the job then builds what it needs itself
            print(f"not prepared ahead ({warm_with}: {type(exc).__name__}: {exc})"[:500], flush=True)
    marker = record_path.with_name(record_path.name + WARM_SUFFIX)
    marker.write_bytes(b"")
    while not job_path.exists():
        time.sleep(_POLL_S)
