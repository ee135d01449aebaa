"""Server lifecycle on a fake server: health poll, start-up failure, time-out, group kill, port freed."""

import os
import sys
import time

import psutil
import pytest

from harness.errors import StageError
from harness.serve.base import free_port, launch, port_in_use


def cmd(port, *extra):
    return [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port), *extra]


def test_health_poll_waits_for_readiness_and_stop_frees_port_and_children(tmp_path):
    port = free_port()
    h = launch(
        "fake", cmd(port, "--startup", "1.5", "--spawn-child"), {}, port, "fake", tmp_path / "s.log", "/health", 30
    )
    assert h.startup_s >= 1.4 and h.alive() and port_in_use(port)
    time.sleep(0.3)
    kids = psutil.Process(h.pid).children(recursive=True)
    assert kids, "the fake server should have spawned a child"
    h.stop(grace=3)
    assert not port_in_use(port)
    for k in kids:
        assert not psutil.pid_exists(k.pid) or k.status() == psutil.STATUS_ZOMBIE
    assert os.getpgid(os.getpid()) != h.pid  # it ran in its own process group


def test_startup_failure_reports_exit_code_port_and_log_tail(tmp_path):
    port = free_port()
    with pytest.raises(StageError) as e:
        launch("fake", cmd(port, "--exit-code", "3"), {}, port, "fake", tmp_path / "s.log", "/health", 30)
    assert "exited with code 3" in str(e.value) and str(port) in str(e.value)
    assert "injected start-up failure" in e.value.log_tail


def test_startup_timeout_kills_the_server(tmp_path):
    port = free_port()
    t = time.monotonic()
    with pytest.raises(StageError, match="did not become healthy within 2 s"):
        launch("fake", cmd(port, "--startup", "60"), {}, port, "fake", tmp_path / "s.log", "/health", 2)
    assert time.monotonic() - t < 20
    assert not port_in_use(port)


def test_server_ignoring_sigterm_is_killed_with_sigkill(tmp_path):
    port = free_port()
    h = launch("fake", cmd(port, "--ignore-sigterm"), {}, port, "fake", tmp_path / "s.log", "/health", 30)
    t = time.monotonic()
    h.stop(grace=1)
    elapsed = time.monotonic() - t
    assert not h.alive() and not port_in_use(port)
    assert h.proc.returncode == -9  # it took SIGKILL: SIGTERM was ignored
    assert 0.9 <= elapsed < 15


def test_server_dies_with_a_parent_killed_outright(tmp_path):
    """SIGKILL of the runner cannot run `finally`; the guard's parent-death signal takes the server down."""
    import signal
    import subprocess

    port = free_port()
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom harness.serve.base import launch\n"
        f"h = launch('fake', [sys.executable, '-m', 'tests.fakes.openai_server', '--port', '{port}'], {{}}, {port}, "
        f"'fake', Path(r'{tmp_path}') / 's.log', '/health', 30)\nprint(h.pid, flush=True)\ntime.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    assert psutil.pid_exists(server_pid) and port_in_use(port)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and psutil.pid_exists(server_pid)
        and psutil.Process(server_pid).status() != psutil.STATUS_ZOMBIE
    ):
        time.sleep(0.1)
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
    assert not port_in_use(port)
