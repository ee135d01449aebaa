"""harness/guard.py with real processes: nothing a guarded command starts outlives it or its parent.

The grandchildren here play vLLM's EngineCore: started by the command, some in a session of their own
(so a process-group kill misses them), some ignoring SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.errors import StageError
from harness.locks import LockTimeout, file_lock
from harness.proc import child_env, deadline, kill_group, run_module, spawn
from harness.settings import load_settings

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the guard's subreaper and /proc walk are Linux")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(pids: list[int], timeout: float) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _read_pids(path: Path, n: int, timeout: float = 10) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            pids = path.read_text().split()
            if len(pids) >= n:
                return [int(p) for p in pids[:n]]
        time.sleep(0.05)
    raise AssertionError(f"{path} never listed {n} pids")


def _engine_like(pids: Path) -> list[str]:
    """A command that starts two grandchildren and waits: one in its own session, one deaf to SIGTERM."""
    return [
        "sh",
        "-c",
        f"setsid sleep 300 & echo $! >> {pids}; sh -c 'trap \"\" TERM; sleep 300' & echo $! >> {pids}; wait",
    ]


def test_leftovers_die_when_the_command_exits(tmp_path):
    pids = tmp_path / "pids"
    proc = spawn(
        ["sh", "-c", f"setsid sleep 300 & echo $! > {pids}; exit 3"], log=subprocess.DEVNULL, env=child_env(), grace=1.0
    )
    assert proc.wait(timeout=20) == 3  # the command's status, not the guard's
    (left,) = _read_pids(pids, 1)
    assert _wait_dead([left], 5) == []


def test_a_signal_death_reads_as_a_shell_reports_it():
    proc = spawn(["sh", "-c", "kill -9 $$"], log=subprocess.DEVNULL, env=child_env(), grace=1.0)
    assert proc.wait(timeout=20) == 137


def test_parent_killed_outright_takes_the_whole_tree(tmp_path):
    """SIGKILL of the runner (no finally runs): the guard notices and takes down the command and both
    grandchildren, including the one in its own session and the one ignoring SIGTERM."""
    pids = tmp_path / "pids"
    code = (
        "import subprocess, time\nfrom harness.proc import spawn, child_env\n"
        f"p = spawn({_engine_like(pids)!r}, log=subprocess.DEVNULL, env=child_env(), grace=1.0)\n"
        "print(p.pid, flush=True)\ntime.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env())
    guard = int(parent.stdout.readline())
    tree = _read_pids(pids, 2)
    assert all(_alive(p) for p in [guard, *tree])
    parent.kill()
    parent.wait(timeout=10)
    assert _wait_dead([guard, *tree], 15) == []


def test_kill_group_reaches_a_grandchild_in_its_own_session(tmp_path):
    pids = tmp_path / "pids"
    proc = spawn(_engine_like(pids), log=subprocess.DEVNULL, env=child_env(), grace=1.0)
    tree = _read_pids(pids, 2)
    t = time.monotonic()
    kill_group(proc, grace=5.0)
    assert proc.returncode is not None
    assert _wait_dead(tree, 5) == []
    assert time.monotonic() - t < 8  # the guard's 1 s grace, not kill_group's SIGKILL fallback


def test_a_cell_lock_outlives_a_killed_parent_until_its_processes_are_gone(tmp_path):
    """The lock is passed to the guard: a resume that takes it knows the old attempt's processes are gone."""
    lock, pids = tmp_path / "cell.lock", tmp_path / "pids"
    slow_exit = ["sh", "-c", f"trap 'sleep 2; exit 0' TERM; echo $$ > {pids}; while :; do sleep 0.1; done"]
    code = (
        "import subprocess, time\nfrom pathlib import Path\nfrom harness.locks import file_lock\n"
        "from harness.proc import children_hold, spawn, child_env\n"
        f"with file_lock(Path({str(lock)!r}), what='cell') as fd, children_hold(fd):\n"
        f"    spawn({slow_exit!r}, log=subprocess.DEVNULL, env=child_env(), grace=5.0)\n"
        "    print('up', flush=True)\n    time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env())
    assert parent.stdout.readline().strip() == "up"
    (cmd,) = _read_pids(pids, 1)
    parent.kill()
    parent.wait(timeout=10)
    with pytest.raises(LockTimeout), file_lock(lock, what="cell", timeout=0.5):  # still finishing under its guard
        pass
    with file_lock(lock, what="cell", timeout=20):
        assert not _alive(cmd)


def test_run_worker_reaps_what_a_stage_left_behind(tmp_path):
    pids = tmp_path / "pids"
    mod = tmp_path / "leaky_stage.py"
    mod.write_text(
        f"import subprocess\np = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        f"open({str(pids)!r}, 'w').write(str(p.pid))\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{child_env()['PYTHONPATH']}"}
    run_module("leaky_stage", [], tmp_path / "s.log", load_settings(), stage="compress", env=env)
    (left,) = _read_pids(pids, 1)
    assert _wait_dead([left], 5) == []  # reaped by the stage's guard, not re-parented to init


def test_a_deadline_cuts_a_stage_short_and_says_which_limit(tmp_path):
    mod = tmp_path / "slow_stage.py"
    mod.write_text("import time\ntime.sleep(60)\n")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{child_env()['PYTHONPATH']}"}
    t = time.monotonic()
    with deadline(2.0, "limits.evaluate_timeout_s"), pytest.raises(StageError, match="evaluate_timeout_s"):
        run_module("slow_stage", [], tmp_path / "s.log", load_settings(), stage="evaluate", timeout=3600, env=env)
    assert time.monotonic() - t < 20


def test_a_guard_whose_parent_is_already_gone_starts_nothing(tmp_path):
    marker = tmp_path / "ran"
    out = subprocess.run(
        [sys.executable, "-m", "harness.guard", "1", "--", "touch", str(marker)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 1 and "is gone" in out.stderr and not marker.exists()


def test_sigterm_to_the_group_reaches_a_deaf_grandchild(tmp_path):
    pids = tmp_path / "pids"
    proc = spawn(_engine_like(pids), log=subprocess.DEVNULL, env=child_env(), grace=1.0)
    tree = _read_pids(pids, 2)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert _wait_dead(tree, 5) == []
