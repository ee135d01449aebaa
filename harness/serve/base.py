"""Server lifecycle shared by every engine plugin.

free port -> start in a new session (own process group), log to file -> poll health with back-off
while checking the process is alive -> ask what was loaded -> use -> SIGTERM group -> grace ->
SIGKILL group -> wait until the port is free. Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import StageError
from harness.proc import kill_group, stage_env, tail
from harness.settings import REPO_ROOT

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


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


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
    loaded: dict = field(default_factory=dict)
    command: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        kill_group(self.proc, grace=grace)
        if not wait_port_free(self.port):
            raise StageError("serve", f"port {self.port} still in use after stopping {self.engine} (pid {self.pid})")


def launch(engine: str, cmd: list[str], env: dict[str, str], port: int, model_name: str, log_path: Path,
           health_path: str, timeout: float) -> ServerHandle:
    """Start `cmd` in its own session and wait until `health_path` answers 200, with back-off."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    t0 = time.monotonic()
    # the guard execs `cmd` with a parent-death signal: a runner killed outright leaves no server behind
    guarded = [sys.executable, "-m", "harness.serve.guard", str(os.getpid()), "--", *cmd]
    proc = subprocess.Popen(guarded, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=stage_env(env), cwd=REPO_ROOT, start_new_session=True)
    log.close()  # the child holds its own descriptor
    handle = ServerHandle(engine=engine, base_url=f"http://{HOST}:{port}/v1", model_name=model_name, port=port,
                          proc=proc, log_path=log_path, command=cmd)
    delay = 0.5
    try:
        while True:
            if proc.poll() is not None:
                raise StageError("serve", f"{engine} exited with code {proc.returncode} during start-up "
                                          f"(port {port}, log {log_path})", tail(log_path))
            if time.monotonic() - t0 > timeout:
                raise StageError("serve", f"{engine} did not become healthy within {timeout:.0f} s "
                                          f"(port {port}, log {log_path})", tail(log_path))
            try:
                status, _ = http_get(f"http://{HOST}:{port}{health_path}", timeout=2.0)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)
    except BaseException:
        handle.stop(grace=5.0)
        raise
    handle.startup_s = time.monotonic() - t0
    return handle


class EngineServer:
    """Start-up shared by the engine plugins: free port -> the plugin's command and env -> launch -> the
    plugin's `inspect` (a mismatch stops the server and fails the cell)."""

    engine: str
    request_extras: dict = {}
    http_keepalive = True  # whether the load generator may reuse pooled connections

    def __init__(self, spec, python: str, device: str) -> None:  # noqa: ANN001
        self.spec, self.python, self.device = spec, python, device

    def env(self) -> dict[str, str]:
        return {}

    def start(self, artefact, served_name: str, log_path: Path, trust_remote_code: bool = False  # noqa: ANN001
              ) -> ServerHandle:
        port = free_port()
        cmd = self.command(artefact, port, served_name, trust_remote_code)
        handle = launch(self.engine, cmd, self.env(), port, served_name, log_path, "/health",
                        self.spec.startup_timeout_s)
        try:
            handle.loaded = self.inspect(handle, artefact)
        except BaseException:
            handle.stop()
            raise
        return handle
