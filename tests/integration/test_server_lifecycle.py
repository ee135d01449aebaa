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
    h = launch("fake", cmd(port, "--startup", "1.5", "--spawn-child"), {}, port, "fake", tmp_path / "s.log",
               "/health", 30)
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
