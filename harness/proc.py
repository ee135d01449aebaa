"""Subprocess helpers: run a typed worker job (harness/jobs.py) in the worker interpreter under the guard, logs
to a file, atomic outputs (`run_worker`); the child side is harness/worker.py.

Workers talk to the parent only through files written atomically (tmp + rename) and a log file: a
chatty child on a pipe can block, and a half-written JSON must never be read as a result.

Live progress goes the same way: a worker appends JSON lines (`WorkerProgress`) to the file named in
DQBENCH_PROGRESS_FILE, and `run_worker` tails it in a thread and hands each record to a callback (the one
passed in, or the one `progress_to` installed around the cell's stage). Only a complete line is read, a
broken one is skipped: progress is best-effort and never fails a stage. No heavy imports here: workers of
every environment import this module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO, Any, TypeVar

from harness import credentials as creds
from harness.errors import StageError
from harness.jobs import Job, Record
from harness.settings import REPO_ROOT, Settings

R = TypeVar("R", bound=Record)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM -> KeyboardInterrupt for the block, so `finally` blocks stop servers and workers when a
    command is stopped politely (`kill`, a scheduler, Ray's task cancel). Only the main thread can set a
    handler; elsewhere this does nothing (guards still take the children down when the process dies)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def write_json_atomic(path: Path, data: object, mode: int | None = None) -> None:
    """`data` as JSON at `path`, whole or not at all (tmp + fsync + rename). The file's mode is `mode`, else
    the temporary file's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])
    except OSError:
        return ""


def child_env(extra: dict[str, str] | None = None, *, credentials: bool = False) -> dict[str, str]:
    """The environment of a process dqbench starts: this one's, without the hub token unless `credentials`
    (only a download asks for it: harness/credentials.py says why), with this checkout importable."""
    env = creds.without_credentials(os.environ)
    # Workers import `harness` from this checkout whatever interpreter runs them.
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(creds.without_credentials(extra or {}))  # a token only by asking, never through `extra`
    if credentials:
        env.update(creds.credentials())
    return env


PROGRESS_ENV = "DQBENCH_PROGRESS_FILE"
ProgressCallback = Callable[[dict[str, Any]], None]
_SINK: ContextVar[ProgressCallback | None] = ContextVar("dqbench_progress_sink", default=None)


@contextmanager
def progress_to(callback: ProgressCallback | None) -> Iterator[None]:
    """Every `run_worker` inside this block (same thread) forwards its worker's progress records to `callback`:
    plugins call run_worker without knowing about the display."""
    token = _SINK.set(callback)
    try:
        yield
    finally:
        _SINK.reset(token)


def progress_sink() -> ProgressCallback | None:
    """The callback `progress_to` installed for this thread, if any (for messages outside run_worker)."""
    return _SINK.get()


class WorkerProgress:
    """Child side: `update(done, total, loss=...)` appends `{"what", "unit", "done", "total", "t", ...}` to
    $DQBENCH_PROGRESS_FILE, at most one line per `every` seconds (the first, a changed total and `force`
    always). With no file named, or `callback` given (in-process use), it writes nothing to disk."""

    def __init__(
        self,
        what: str,
        unit: str = "",
        total: int | float | None = None,
        every: float = 0.5,
        callback: ProgressCallback | None = None,
    ) -> None:
        self.what, self.unit, self.total, self.every, self.callback = what, unit, total, every, callback
        self.path = os.environ.get(PROGRESS_ENV) if callback is None else None
        self._last = float("-inf")
        self._lock = threading.Lock()  # teacher generation reports from a thread pool

    @property
    def active(self) -> bool:
        return bool(self.path or self.callback)

    def update(
        self, done: int | float, total: int | float | None = None, *, force: bool = False, **extra: object
    ) -> None:
        if not self.active:
            return
        with self._lock:
            changed = total is not None and total != self.total
            if total is not None:
                self.total = total
            now = time.time()
            if not (force or changed or now - self._last >= self.every or (self.total and done >= self.total)):
                return
            self._last = now
            rec = {
                "what": self.what,
                "unit": self.unit,
                "done": done,
                "total": self.total,
                "t": round(now, 3),
                **{k: v for k, v in extra.items() if v is not None},
            }
            if self.callback is not None:
                self.callback(rec)
                return
            if self.path is None:
                return
            try:  # one write() of one line: a reader never sees half of it as a whole line
                with open(self.path, "a") as f:
                    f.write(json.dumps(rec, default=str) + "\n")
            except OSError:
                self.path = None  # the parent's folder went away: stop reporting, keep working


class _ProgressTail(threading.Thread):
    """Parent side: reads complete JSON lines appended to `path` and calls `callback` with each record."""

    def __init__(self, path: Path, callback: ProgressCallback, poll: float = 0.2) -> None:
        super().__init__(daemon=True, name=f"progress-{path.name}")
        self.path, self.callback, self.poll = path, callback, poll
        self._stop_evt = threading.Event()
        self._pos, self._buf = 0, b""

    def drain(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                chunk = f.read()
        except OSError:
            return
        self._pos += len(chunk)
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                try:
                    self.callback(rec)
                except Exception:  # noqa: BLE001 - a display bug must not fail the stage
                    pass

    def run(self) -> None:
        while not self._stop_evt.wait(self.poll):
            self.drain()

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)
        self.drain()  # what the child wrote just before it exited


# Deadlines over the workers started in a block (same thread): the cell's (`limits.cell_deadline_s`) and a
# stage's own (`limits.evaluate_timeout_s` ...) nest; every run_worker timeout is cut to the nearest one.
_DEADLINE: ContextVar[tuple[float, str] | None] = ContextVar("dqbench_deadline", default=None)


@contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Workers started in this block must end within `seconds` (None: no new limit); `what` names the limit
    in the error. An outer, nearer deadline still wins."""
    outer = _DEADLINE.get()
    mine = None if seconds is None else (time.monotonic() + seconds, what)
    token = _DEADLINE.set(min((d for d in (outer, mine) if d is not None), default=None))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def deadline_left() -> tuple[float, str] | None:
    """(seconds left, what the limit is) of the nearest deadline, or None without one."""
    d = _DEADLINE.get()
    return None if d is None else (max(0.0, d[0] - time.monotonic()), d[1])


def deadline_timeout(timeout: float | None) -> float | None:
    """`timeout` cut to the nearest deadline (at least 1 s, so a spent deadline fails fast, not at once)."""
    d = deadline_left()
    if d is None:
        return timeout
    left = max(d[0], 1.0)
    return left if timeout is None else min(timeout, left)


# Lock descriptors every child must keep open: a cell's lock (harness/cell/run.py) is passed to each guard, so
# the lock stays held until the last process of an attempt is gone, even when the runner was killed first.
_HOLD: ContextVar[tuple[int, ...]] = ContextVar("dqbench_hold_fds", default=())


@contextmanager
def children_hold(fd: int) -> Iterator[None]:
    """Every process spawned in this block (same thread) inherits `fd` (its guard keeps it, not the command)."""
    token = _HOLD.set((*_HOLD.get(), fd))
    try:
        yield
    finally:
        _HOLD.reset(token)


def spawn(cmd: list[str], *, log: IO[bytes] | int, env: dict[str, str], grace: float = 8.0) -> subprocess.Popen[bytes]:
    """Start `cmd` under harness/guard.py in a new session: the guard is the group leader, reaps everything
    the command spawns (vLLM's engine processes too) and takes it all down when this process dies, however
    it dies. `log` is an open binary file for stdout and stderr."""
    guarded = [sys.executable, "-m", "harness.guard", str(os.getpid()), "--grace", f"{grace:g}", "--", *cmd]
    return subprocess.Popen(
        guarded,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,
        pass_fds=_HOLD.get(),
    )


def run_module(
    module: str,
    args: list[str],
    log_path: Path,
    settings: Settings,
    *,
    stage: str,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    on_progress: ProgressCallback | None = None,
    name: str | None = None,
    credentials: bool = False,
) -> None:
    """Run `python -m MODULE ARGS` in its own process group; on failure raise StageError for the
    pipeline step `stage` with the log tail. Progress records the worker writes go to `on_progress`, else to
    the callback of `progress_to`. `credentials`: the child gets the hub token (a download; nothing else)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    callback = on_progress or _SINK.get()
    watcher = None
    extra = dict(env or {})
    if callback is not None:
        ppath = log_path.parent / f".{log_path.stem}.{name or module.rsplit('.', 1)[-1]}.progress.jsonl"
        ppath.write_bytes(b"")
        extra[PROGRESS_ENV] = str(ppath)
        watcher = _ProgressTail(ppath, callback)
        watcher.start()
    try:
        with open(log_path, "ab") as log:
            proc = spawn([settings.python, "-m", module, *args], log=log, env=child_env(extra, credentials=credentials))
        wait_module(proc, module, log_path, stage=stage, timeout=timeout)
    finally:
        if watcher is not None:
            watcher.stop()
            Path(watcher.path).unlink(missing_ok=True)


def wait_module(
    proc: subprocess.Popen[bytes], module: str, log_path: Path, *, stage: str, timeout: float | None
) -> None:
    """Wait for a worker process run_module (or harness/worker_ahead.py) started; StageError for `stage` with
    the log tail when it times out or fails; Ctrl-C takes its whole group down first."""
    timeout = deadline_timeout(timeout)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        d = deadline_left()
        why = f" ({d[1]})" if d and d[0] == 0.0 else ""
        raise StageError(stage, f"timed out after {timeout:.0f} s{why} (log: {log_path})", tail(log_path)) from None
    except BaseException:  # Ctrl-C: take the whole child group down with us
        kill_group(proc)
        raise
    if rc != 0:
        raise StageError(stage, f"`python -m {module}` exited with {rc} (log: {log_path})", tail(log_path))


def wait_ahead(
    proc: subprocess.Popen[bytes],
    progress_path: Path | None,
    log_path: Path,
    *,
    stage: str,
    timeout: float | None,
    on_progress: ProgressCallback | None,
) -> None:
    """run_module's wait for a worker that was started ahead of its job (harness/worker_ahead.py): its progress
    file, when it was given one, tailed to `on_progress` or the open sink."""
    callback = on_progress or _SINK.get()
    watcher = _ProgressTail(progress_path, callback) if callback is not None and progress_path is not None else None
    if watcher is not None:
        watcher.start()
    try:
        wait_module(proc, "harness.worker", log_path, stage=stage, timeout=timeout)
    finally:
        if watcher is not None:
            watcher.stop()


def write_job(job: Job[Any], path: Path) -> None:
    """The job as the child reads it (harness/worker.read_job): its class, to find it again, and its fields."""
    write_json_atomic(path, {"type": type(job).type_path(), "job": job.model_dump(mode="json")})


def run_worker(
    job: Job[R],
    log_path: Path,
    settings: Settings,
    *,
    stage: str,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    on_progress: ProgressCallback | None = None,
    credentials: bool = False,
) -> R:
    """Run `job` in a worker process (`python -m harness.worker`, settings.python's environment, its own
    process group under the guard) and return its record, validated. The job and record files sit beside
    the log under unique names and are removed afterwards (the child logs the job it ran). A worker that
    fails, or ends without a valid record, raises StageError for the pipeline step `stage` with the log tail.
    `credentials`: the worker gets the hub token (the download worker; harness/credentials.py)."""
    from harness.worker_ahead import claim  # here: that module imports this one

    log_path.parent.mkdir(parents=True, exist_ok=True)
    # a worker started ahead for this job (harness/worker_ahead.py) takes it, when it can run it as asked
    ahead = claim(type(job), log_path, dict(env or {}), credentials, settings.python)
    if ahead is not None:
        job_path, record_path = ahead.job_path, ahead.record_path
    else:
        stem = f".{log_path.stem}.{type(job).short_name()}."
        fd, job_name = tempfile.mkstemp(dir=log_path.parent, prefix=stem, suffix=".job.json")
        os.close(fd)
        job_path, record_path = Path(job_name), Path(job_name[: -len(".job.json")] + ".record.json")
    try:
        write_job(job, job_path)
        if ahead is not None:
            wait_ahead(ahead.proc, ahead.progress_path, log_path, stage=stage, timeout=timeout, on_progress=on_progress)
        else:
            run_module(
                "harness.worker",
                ["--job", str(job_path), "--record", str(record_path)],
                log_path,
                settings,
                stage=stage,
                timeout=timeout,
                env=env,
                on_progress=on_progress,
                name=type(job).short_name(),
                credentials=credentials,
            )
        record_type = type(job).record_type()
        try:
            record = record_type.model_validate_json(record_path.read_bytes())
        except (OSError, ValueError) as e:
            raise StageError(
                stage,
                f"{type(job).worker} wrote no valid {record_type.__name__}: {e} (log: {log_path})",
                tail(log_path),
            ) from None
        return record  # type: ignore[return-value]  # record_type() is R by construction (Job[R])
    finally:
        job_path.unlink(missing_ok=True)
        record_path.unlink(missing_ok=True)
        if ahead is not None:
            ahead.close()  # killed if it still runs (the job never reached it), its files removed


def kill_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, wait `grace` seconds, then SIGKILL it. The group id is the leader's pid
    (started with a new session), so members that outlived an already-reaped leader are still reached."""
    pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # children may outlive the leader: make sure nothing of the group is left
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
