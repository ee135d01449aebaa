"""Subprocess helpers: run a stage module with the stage interpreter, logs to a file, atomic outputs.

Stages talk to the parent only through files written atomically (tmp + rename) and a log file: a
chatty child on a pipe can block, and a half-written JSON must never be read as a result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from harness.errors import StageError
from harness.settings import REPO_ROOT, Settings


def stage_config() -> dict:
    """A stage's input: `python -m harness.stages.X --config FILE.json`."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    return json.loads(Path(ap.parse_args().config).read_text())


def write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def stage_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # Stages import `harness` from this checkout whatever interpreter runs them.
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_stage(module: str, args: list[str], log_path: Path, settings: Settings, *, stage: str,
              timeout: float | None = None, env: dict[str, str] | None = None) -> None:
    """Run `python -m MODULE ARGS` in its own process group; raise StageError with the log tail on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([settings.python, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=stage_env(env),
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise StageError(stage, f"timed out after {timeout:.0f} s (log: {log_path})", tail(log_path)) from None
        except BaseException:  # Ctrl-C: take the whole child group down with us
            kill_group(proc)
            raise
    if rc != 0:
        raise StageError(stage, f"`python -m {module}` exited with {rc} (log: {log_path})", tail(log_path))


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait `grace` seconds, then SIGKILL it."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
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
