"""Servers started ahead of their cell (issue #31; DQBENCH_PRESTART=1, off by default).

A vLLM server takes a minute to start, most of it importing Python into three processes. The next cell's
server can start while this cell evaluates (harness/executors/local.py decides when, harness/cell/ahead.py
prepares the next cell's artefact); when that cell's serve step asks its engine plugin to start the very
same server (same command but the port, same environment: `key`), `EngineServer.start` takes the one
already running (`take`) instead of starting another. A start-up that failed ahead is not taken: the serve
step starts the server again and reports its own failure.

Whether it pays is measured, not assumed: on a 2-core host the start-up's imports compete with the
evaluation for the same cores (bench/eval_efficiency.py --overlap; docs/results/).

`room_for(cell)` says whether a second server fits beside the running one: on a CPU the cell's planned
memory estimate against the host's available memory now; on a GPU what vLLM will reserve
(`gpu_memory_utilization` of the GPU) against the GPU's free memory now (nvidia-smi).
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.plan.cell import CellPlan
    from harness.result import Artefact
    from harness.serve.base import EngineServer, ServerHandle

MARGIN_GIB = 1.0  # what is left free beside both servers


def key(server: EngineServer, artefact: Artefact, served_name: str, trust_remote_code: bool) -> tuple:
    """What must be equal for a server started ahead to be the one a cell asks for."""
    cmd = server.command(artefact, 0, served_name, trust_remote_code)
    return (server.engine, server.device, tuple(cmd), tuple(sorted(server.env().items())))


@dataclass
class _Ahead:
    thread: threading.Thread
    owner: str  # the cell it was started for
    started: float = field(default_factory=time.monotonic)
    handle: ServerHandle | None = None
    error: BaseException | None = None


_POOL: dict[tuple, _Ahead] = {}
_LOCK = threading.Lock()


def start_ahead(
    server: EngineServer, artefact: Artefact, served_name: str, log_path: Path, trust: bool, owner: str
) -> None:
    """Start the server in a background thread; `take` hands it to the serve step that asks for it."""
    k = key(server, artefact, served_name, trust)

    def run() -> None:
        try:
            entry.handle = server.start_now(artefact, served_name, log_path, trust)
        except BaseException as exc:  # noqa: BLE001 - the serve step starts it again and reports its own error
            entry.error = exc

    entry = _Ahead(threading.Thread(target=run, daemon=True, name=f"prestart-{served_name}"), owner)
    with _LOCK:
        if k in _POOL:
            return
        _POOL[k] = entry
    entry.thread.start()


def take(server: EngineServer, artefact: Artefact, served_name: str, trust: bool) -> ServerHandle | None:
    """The server started ahead for exactly this start, once it is up (waiting for a start still under
    way), or None. `handle.ahead_s` says how much of its start-up ran before it was asked for."""
    if not _POOL:
        return None
    with _LOCK:
        entry = _POOL.pop(key(server, artefact, served_name, trust), None)
    if entry is None:
        return None
    asked = time.monotonic()
    entry.thread.join()
    handle = entry.handle
    if handle is None or not handle.alive():
        if handle is not None:
            handle.stop(grace=5.0)
        return None
    handle.ahead_s = round(max(0.0, min(handle.startup_s, asked - entry.started)), 3)
    return handle


def discard(owner: str | None = None) -> None:
    """Stop the servers started ahead and not taken (those started for cell `owner`, or all): a cell that
    failed before its serve step, an interrupted run."""
    with _LOCK:
        doomed = [k for k, e in _POOL.items() if owner is None or e.owner == owner]
        entries = [_POOL.pop(k) for k in doomed]
    for e in entries:
        e.thread.join()
        if e.handle is not None:
            try:
                e.handle.stop(grace=5.0)
            except Exception:  # noqa: BLE001 - a port still held is the next start's problem, not this one's
                pass


def room_for(cell: CellPlan, serving: Any) -> str | None:
    """Why the cell's server may not start beside the running one (None: it fits)."""
    if cell.device == "cuda":
        free, total = _gpu_free_total_gib()
        if free is None or total is None:
            return "the GPU's free memory is unknown (nvidia-smi did not answer)"
        need = (
            serving.gpu_memory_utilization * total
            if hasattr(serving, "gpu_memory_utilization")
            else (cell.estimate.total_gib if cell.estimate else None)
        )
    else:
        free, need = _available_gib(), cell.estimate.total_gib if cell.estimate else None
        if free is None:
            return "the host's available memory is unknown (/proc/meminfo)"
    if need is None:
        return "the cell has no memory estimate"
    if need + MARGIN_GIB > free:
        return f"it needs about {need:.1f} GiB and {free:.1f} GiB are free now"
    return None


def _available_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _gpu_free_total_gib() -> tuple[float | None, float | None]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free,memory.total", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split(",")
        return float(out[0]) / 1024, float(out[1]) / 1024
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None, None
