"""Server lifecycle shared by every engine plugin.

free port -> start under a guard (harness/guard.py) in a new session (own process group), log to file ->
poll health with back-off while checking the process is alive -> ask what was loaded -> use -> SIGTERM
group -> grace -> SIGKILL group -> wait until the port is free. Bound to 127.0.0.1 only. A start-up that
lost its port (taken between probing and binding, when cells run side by side) retries on another.

While a cell uses the server, `ServerHandle.health_problem()` is the one test of whether it is still
serving (process exited, engine death in its log, /health) and `root_cause()` the one reading of why not:
the runner fails the stage with that line rather than with the client's connection error.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import StageError
from harness.guard import descendants, proc_state
from harness.proc import child_env, kill_group, spawn, tail
from harness.serve import prestart
from harness.serve.log_window import KEEP_BYTES, LogWindow, head
from harness.serve.scoring import Scoring

if TYPE_CHECKING:
    from harness.result import Artefact
    from harness.serve.speculative import DraftModel

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def wait_port_free(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_in_use(port):
            return True
        time.sleep(0.25)
    return False


def running(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie waiting to be reaped)."""
    st = proc_state(pid)
    if st is None:
        return not os.path.exists("/proc/self/stat")  # no procfs: cannot tell, assume it runs
    return st[0] not in ("Z", "X")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# Lines saying the engine behind a still-running HTTP front end is gone. vLLM v1: the engine-core process
# logs "EngineCore encountered a fatal error" and its traceback, then the API server logs EngineDeadError
# (or "Engine core proc ... died unexpectedly" when the core was killed) and keeps answering HTTP 500.
# llama.cpp aborts the whole process (caught by the exit check); its abort messages are matched too, for
# the moment between the message and the exit.
ENGINE_DEAD = re.compile(
    r"EngineDeadError|EngineCore encountered a fatal error|Engine core proc \S+ died|"
    r"GGML_ASSERT|terminate called after throwing"
)
# vLLM prefixes every line: "(EngineCore_DP0 pid=12) ERROR 05-01 12:00:00 [core.py:710] "
_PREFIX = re.compile(
    r"^(?:\(\w+(?:\s+pid=\d+)?\)\s*)?"
    r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d\s+[\d:.]+\s+\[[^\]]*\]\s?)?"
)
# a Python exception line: "AttributeError: ...", "torch.OutOfMemoryError: ...", "vllm....EngineDeadError: ..."
_EXC = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Fault)(?::\s|$)")
# what other engines print when they fail (llama.cpp: "error loading model: ...", GGML_ASSERT, what():)
_ERRLINE = re.compile(
    r"(?i)\berror\b\s*:|\bfatal\b|GGML_ASSERT|what\(\):|terminate called|segmentation fault|"
    r"out of memory|failed to load|\bdied\b"
)
# consequences, never the cause: the death notice itself and the requests it cancelled
_NOISE = re.compile(
    r"EngineDeadError|EngineGenerateError|CancelledError|EngineCore encountered|"
    r"See stack trace \(above\)|See root cause above|please check the stack trace above"
)


def root_cause(log_text: str) -> str | None:
    """The line of a server log that says why the engine failed, or None.

    The last exception line before the first EngineDeadError (what vLLM logs once the engine core has
    died, and again for every request after it); without one, the last exception line in the text, then
    the last line that looks like an error (llama.cpp prints no Python tracebacks)."""
    lines = [_PREFIX.sub("", ln).strip() for ln in log_text.splitlines()]
    cut = next((i for i, ln in enumerate(lines) if "EngineDeadError" in ln), len(lines))
    for window in (lines[:cut], lines):
        for pattern in (_EXC, _ERRLINE):
            hits = [ln for ln in window if pattern.search(ln) and not _NOISE.search(ln)]
            if hits:
                return hits[-1][:400]
    return None


@dataclass
class ServerHandle:
    """A running server. `loaded` is what the engine says it loaded (recorded with the cell)."""

    engine: str
    base_url: str  # http://127.0.0.1:PORT/v1
    model_name: str  # the name requests must use
    port: int
    proc: subprocess.Popen
    log_path: Path
    startup_s: float = 0.0
    spawned_at: float = 0.0  # time.time() at the spawn: engines log wall-clock times (harness/serve/startup.py)
    ahead_s: float = 0.0  # how much of the start-up ran before the cell asked for it (harness/serve/prestart.py)
    loaded: dict = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    # where this server's part of the log begins: the file is appended to, and an earlier attempt's
    # engine death must not fail this one
    log_offset: int = 0
    _scan_pos: int = field(default=0, repr=False)  # how far _engine_dead has read the log
    _dead_seen: bool = field(default=False, repr=False)
    _window: LogWindow | None = field(default=None, repr=False)  # log_text's incremental reader
    health_path: str = "/health"

    server_pid: int | None = None  # the engine's own process, below its guard (harness/guard.py)

    @property
    def pid(self) -> int:
        """The server process (what memory is sampled under); `proc` is its guard."""
        return self.server_pid or self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self, max_bytes: int = KEEP_BYTES) -> str:
        """This server's log since it was started (its last `max_bytes`, at most KEEP_BYTES), read
        incrementally: only what the file gained since the last look (harness/serve/log_window.py)."""
        if self._window is None:
            self._window = LogWindow(self.log_path, self.log_offset)
        return self._window.text(max_bytes)

    def log_head(self) -> str:
        """This server's first lines (its start-up and engine config), without an earlier attempt's part."""
        return head(self.log_path, self.log_offset)

    def root_cause(self) -> str | None:
        return root_cause(self.log_text())

    def _engine_dead(self) -> bool:
        """Scan only what the log gained since the last look: this is polled from the load generator's
        event loop every 0.5 s, and re-reading the tail each time would perturb the latencies it measures."""
        if self._dead_seen:
            return True
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                end = f.tell()
                start = max(self.log_offset, self._scan_pos - 256)  # overlap: a line split across two looks
                if end <= start:
                    return False
                f.seek(start)
                text = f.read(end - start).decode("utf-8", "replace")
        except OSError:
            return False
        self._scan_pos = end
        self._dead_seen = bool(ENGINE_DEAD.search(text))
        return self._dead_seen

    def failure_tail(self, lines: int = 40) -> str:
        """The log tail for a failed cell, with the root-cause line and the lines before it when they
        scrolled out of the tail (vLLM logs long tracebacks after the cause)."""
        text = self.log_text().splitlines()
        last = text[-lines:]
        cause = root_cause("\n".join(text))
        if cause and not any(cause in ln for ln in last):
            at = max((i for i, ln in enumerate(text) if cause in ln), default=None)
            if at is not None:
                return "\n".join([*text[max(0, at - 6) : at + 1], "[...]", *last])
        return "\n".join(last)

    def health_problem(self, http: bool = False, settle: float = 0.0) -> str | None:
        """Why this server can no longer serve (None while it can): its process exited, its log reports
        engine death, or (`http`) /health does not answer 200. The message names the engine, pid, port,
        log and the root-cause line of the log. `settle`: keep looking this long for a problem to show
        (after a failed request, the engine's traceback may still be on its way to the log)."""
        deadline = time.monotonic() + settle
        while True:
            what = self._problem(http)
            if what or time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        if what is None:
            return None
        where = f"(pid {self.pid}, port {self.port}, log {self.log_path})"
        cause = self.root_cause()
        return (
            f"{what} {where}; root cause from its log: {cause}"
            if cause
            else f"{what} {where}; no error line in its log"
        )

    def _problem(self, http: bool) -> str | None:
        rc = self.proc.poll()
        if rc is None and self.server_pid and not running(self.server_pid):
            # the server has exited and its guard is about to report its status: wait for it, so the
            # message says "exited with code N" rather than what its last log lines suggest
            try:
                rc = self.proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                pass
        if rc is not None:
            return f"{self.engine} server exited with code {rc}"
        if self._engine_dead():
            return f"{self.engine} engine died (its server process is still up, answering errors)"
        if http:
            status = None
            for attempt in range(2):  # one retry: a busy server may miss a single probe
                if attempt:
                    time.sleep(1.0)
                try:
                    code, _ = http_get(f"http://{HOST}:{self.port}{self.health_path}", timeout=10.0)
                    status = f"answered HTTP {code}"
                except OSError as exc:
                    code, status = None, f"did not answer ({type(exc).__name__}: {exc})"
                if code == 200:
                    return None
            return f"{self.engine} {self.health_path} {status}"
        return None

    def stop(self, grace: float = 15.0) -> None:
        kill_group(self.proc, grace=grace)
        if not wait_port_free(self.port):
            raise StageError("serve", f"port {self.port} still in use after stopping {self.engine} (pid {self.pid})")


def launch(
    engine: str,
    cmd: list[str],
    env: dict[str, str],
    port: int,
    model_name: str,
    log_path: Path,
    health_path: str,
    timeout: float,
) -> ServerHandle:
    """Start `cmd` in its own session and wait until `health_path` answers 200, with back-off."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    offset = log.seek(0, os.SEEK_END)
    t0, spawned_at = time.monotonic(), time.time()
    # the guard runs `cmd` and stays: a runner killed outright leaves no server behind, and nothing the
    # server spawned (vLLM's EngineCore) either. Its grace stays inside ServerHandle.stop's.
    proc = spawn(cmd, log=log, env=child_env(env), grace=12.0)
    log.close()  # the child holds its own descriptor
    handle = ServerHandle(
        engine=engine,
        base_url=f"http://{HOST}:{port}/v1",
        model_name=model_name,
        port=port,
        proc=proc,
        log_path=log_path,
        command=cmd,
        log_offset=offset,
        health_path=health_path,
        spawned_at=spawned_at,
    )
    delay = 0.5
    try:
        while True:
            if proc.poll() is not None:
                raise StageError(
                    "serve",
                    f"{engine} exited with code {proc.returncode} during start-up (port {port}, log {log_path})",
                    tail(log_path),
                )
            if time.monotonic() - t0 > timeout:
                raise StageError(
                    "serve",
                    f"{engine} did not become healthy within {timeout:.0f} s (port {port}, log {log_path})",
                    tail(log_path),
                )
            try:
                status, _ = http_get(f"http://{HOST}:{port}{health_path}", timeout=2.0)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(delay)
            # a refused connection to 127.0.0.1 costs microseconds: look every second at most, so a server
            # that is up is used within a second (a 5 s cap left up to 5 s of every start-up unused)
            delay = min(delay * 1.5, 1.0)
    except BaseException:
        handle.stop(grace=5.0)
        raise
    handle.startup_s = time.monotonic() - t0
    handle.server_pid = next(iter(descendants(proc.pid)), None)  # the guard's one child: the server
    return handle


PORT_ATTEMPTS = 3
# what vLLM (uvicorn) and llama-server print when the port was taken between probing and binding
_PORT_TAKEN = re.compile(r"Address already in use|couldn't bind HTTP server socket|EADDRINUSE")


def lost_port(log_path: Path, offset: int) -> bool:
    """Whether the start-up logged from `offset` on failed because its port was taken."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            return bool(_PORT_TAKEN.search(f.read().decode("utf-8", "replace")))
    except OSError:
        return False


class EngineServer(ABC):
    """Start-up shared by the engine plugins: free port -> the plugin's command and env -> launch -> the
    plugin's `inspect` (a mismatch stops the server and fails the cell). An engine implements `command`,
    `inspect` and `scoring`; the rest has defaults (harness/contracts.ServerContract is the contract)."""

    engine: ClassVar[str]
    # fields every request of the load test carries (e.g. ignore_eos, so each answer is the planned length)
    request_extras: ClassVar[dict[str, Any]] = {}
    http_keepalive: ClassVar[bool] = True  # whether the load generator may reuse pooled connections
    # a start-up long enough, and mostly on one core, for the evaluate worker to be started beside it
    # (harness/worker_ahead.py); llama-server's second or two is not
    starts_slowly: ClassVar[bool] = False

    def __init__(self, spec: Any, python: str, device: str) -> None:
        self.spec, self.python, self.device = spec, python, device
        # --- speculative decoding (issue #28): the draft a spec-decoded cell is served with, set by its serve step
        # (harness/cell/steps.py); the engine's command adds its flags (harness/serve/speculative.py)
        self.draft: DraftModel | None = None
        # the cell's KV-cache precision (axes.kv_cache, harness/spec/kv_cache.py), set by its serve step; `auto`:
        # the engine's default, no option added
        self.kv_cache: str = "auto"

    @abstractmethod
    def command(self, artefact: Artefact, port: int, served_name: str, trust_remote_code: bool) -> list[str]:
        """The server's command line, listening on 127.0.0.1:`port` under the model name `served_name`."""

    @abstractmethod
    def inspect(self, handle: ServerHandle, artefact: Artefact) -> dict[str, Any]:
        """What the running server says it loaded (recorded with the cell); raises StageError when that is
        not what the artefact planned (another dtype, no quantization)."""

    @abstractmethod
    def scoring(self, handle: ServerHandle, artefact: Artefact) -> Scoring:
        """How lm-eval and the shift score this cell (harness/serve/scoring.py): through this server, or
        in-process on the same artefact."""

    def evaluate_env(self) -> dict[str, str]:
        """The environment the evaluate worker needs for this engine's `scoring` (none: scored through the
        server), known before the server starts, so that the worker can be started ahead (harness/worker_ahead.py)."""
        return {}

    def env(self) -> dict[str, str]:
        """Environment variables the server process needs besides the orchestrator's."""
        return {}

    def startup_phases(self, handle: ServerHandle) -> dict[str, float]:
        """Where `handle`'s start-up went, phase -> seconds in order, summing to its startup_s, read from the
        engine's own log (harness/serve/startup.py); {} when the engine says nothing this can read."""
        return {}

    def start(
        self,
        artefact: Artefact,
        served_name: str,
        log_path: Path,
        trust_remote_code: bool = False,
    ) -> ServerHandle:
        """The server, up and inspected: the one started ahead for this very start (DQBENCH_PRESTART,
        harness/serve/prestart.py) if there is one, else started now."""
        ahead = prestart.take(self, artefact, served_name, trust_remote_code)
        if ahead is not None:
            return ahead
        return self.start_now(artefact, served_name, log_path, trust_remote_code)

    def start_now(
        self,
        artefact: Artefact,
        served_name: str,
        log_path: Path,
        trust_remote_code: bool = False,
    ) -> ServerHandle:
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            cmd = self.command(artefact, port, served_name, trust_remote_code)
            offset = log_path.stat().st_size if log_path.exists() else 0
            try:
                handle = launch(
                    self.engine, cmd, self.env(), port, served_name, log_path, "/health", self.spec.startup_timeout_s
                )
                break
            except StageError:
                # the port was free when probed and taken before the server bound it (cells side by side)
                if attempt + 1 < PORT_ATTEMPTS and lost_port(log_path, offset):
                    continue
                raise
        try:
            handle.loaded = self.inspect(handle, artefact)
            if self.draft is not None:  # the engine must say it loaded the draft: no silent fallback to none
                from harness.serve.speculative import draft_loaded

                handle.loaded.update(draft_loaded(self.engine, handle.log_text(), self.draft))
        except BaseException:
            handle.stop()
            raise
        return handle
