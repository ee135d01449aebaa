"""A small resident supervisor between dqbench and every process it starts (servers and stages).

    python -m harness.guard PARENT_PID [--grace S] -- CMD ARGS...

Why resident, not exec: an exec'd command with a parent-death signal dies with its parent, but the
processes *it* spawns do not. vLLM's API server forks `VLLM::EngineCore`; when the runner was SIGKILLed
the API server died and its EngineCore was re-parented to init and lived on for minutes holding the
model's memory (issue #16, measured). So the guard stays, and:

- it is the process-group leader (its parent starts it in a new session) and a *child subreaper*
  (prctl PR_SET_CHILD_SUBREAPER): whatever its command spawns stays its descendant even after the
  intermediate parent dies, so the guard can always find and reap the whole tree (/proc walk);
- it runs CMD as its child, with a parent-death SIGKILL (a guard killed outright takes its command along);
- it watches its own parent: the kernel's parent-death signal (SIGUSR1 here) wakes it, and a poll of
  getppid() backs it up (the signal fires when the *thread* that started the guard exits, so it is only
  trusted once getppid() confirms the parent process is gone);
- on SIGTERM it SIGTERMs the tree, waits `--grace` seconds and SIGKILLs what is left; on parent death the
  same with at most PARENT_GONE_GRACE_S (nobody waits for a clean shutdown then);
- when CMD exits on its own, it kills what CMD left behind (children outliving their parent) and exits
  with CMD's status (a signal N becomes 128+N, as a shell reports it).

Only the standard library: this runs under the orchestrator's interpreter before anything else. Linux only
for the subreaper and /proc walk; elsewhere it degrades to killing its process group.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PARENT_GONE_GRACE_S = 2.0  # SIGTERM -> SIGKILL when the parent died


def _libc():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def proc_state(pid: int | str) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process from /proc/PID/stat, or None when it is gone or unreadable.
    The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :].split()
    return (rest[0], int(rest[1])) if len(rest) > 1 else None


def descendants(root: int) -> list[int]:
    """Every live process below `root` (a /proc walk: a pid's parent is field 4 of /proc/PID/stat)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        st = proc_state(name)
        if st is not None and st[0] != "Z":
            children.setdefault(st[1], []).append(int(name))
    out, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            out.append(pid)
            todo.append(pid)
    return out


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(keep: int | None = None) -> None:
    """Collect exited children (the subreaper inherits orphans; their zombies are ours to clear), except
    `keep`, whose exit status Popen.wait must still read. waitid(WNOWAIT) peeks before reaping."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == keep:
            return
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            return


def take_down(grace: float, keep: int | None = None) -> None:
    """SIGTERM everything below this process, wait up to `grace` s for it to go, SIGKILL the rest.
    `keep`: the command's pid, signalled like the rest but reaped by Popen (it keeps its status)."""
    me = os.getpid()
    _signal_all(descendants(me), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(keep)
        if not descendants(me):
            return
        time.sleep(0.1)
    for _ in range(3):  # a process may fork between the walk and the kill: walk again
        left = descendants(me)
        if not left:
            break
        _signal_all(left, signal.SIGKILL)
        time.sleep(0.1)
        _reap(keep)


def main(argv: list[str] | None = None) -> int:
    stop: list[str] = []
    # first thing: this process's own handlers, whatever it inherited (a SIGINT ignored by a background
    # launch would stay ignored otherwise, harness/entry.py); the command it runs gets the default actions
    signal.signal(signal.SIGTERM, lambda s, f: stop.append("SIGTERM"))
    signal.signal(signal.SIGINT, lambda s, f: stop.append("SIGINT"))
    argv = list(sys.argv[1:] if argv is None else argv)
    grace = 8.0
    if "--" not in argv:
        raise SystemExit("usage: python -m harness.guard PARENT_PID [--grace S] -- CMD ...")
    cut = argv.index("--")
    head, cmd = argv[:cut], argv[cut + 1 :]
    parent = int(head[0])
    if "--grace" in head:
        grace = float(head[head.index("--grace") + 1])
    if not cmd:
        raise SystemExit("guard: no command")

    signal.signal(signal.SIGUSR1, lambda s, f: None)  # parent-death notice: the loop checks getppid()
    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl could notice
        print(f"guard: parent {parent} is gone; not starting {cmd[0]}", file=sys.stderr, flush=True)
        return 1
    try:
        child = subprocess.Popen(cmd, preexec_fn=_die_with_parent)
    except OSError as exc:
        print(f"guard: cannot start {cmd[0]}: {exc}", file=sys.stderr, flush=True)
        return 127

    rc = None
    while rc is None:
        if stop or os.getppid() != parent:
            why = stop[0] if stop else f"parent {parent} died"
            print(
                f"guard: {why}; stopping {cmd[0]} (pid {child.pid}) and everything it started",
                file=sys.stderr,
                flush=True,
            )
            # a polite stop (SIGTERM) gets the full grace; when the parent is gone nobody waits for a clean
            # shutdown, and the next attempt needs the memory and the port now (measured: a vLLM server
            # still loading ignored SIGTERM for the whole 12 s grace)
            take_down(grace if stop else min(grace, PARENT_GONE_GRACE_S), keep=child.pid)
            child.wait()
            return 128 + signal.SIGTERM
        try:
            rc = child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            _reap(keep=child.pid)  # orphans re-parented to us
    # the command exited by itself: what it left running dies now, not when someone notices
    take_down(min(grace, 3.0))
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main())
