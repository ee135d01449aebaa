"""Exec a server so that it dies with the process that started it.

    python -m harness.serve.guard PARENT_PID -- CMD ARGS...

Sets the Linux parent-death signal (prctl PR_SET_PDEATHSIG, SIGKILL), checks the parent is still
PARENT_PID (it may have died before prctl), then execs CMD: the signal survives exec. A runner or
Ray worker that is killed outright (SIGKILL, OOM) thus leaves no server holding memory and a port;
a polite stop still goes through the process-group SIGTERM/SIGKILL in serve/base.py. On systems
without prctl the command is exec'd unguarded.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent = int(sys.argv[1])
    if sys.argv[2] != "--":
        raise SystemExit("usage: python -m harness.serve.guard PARENT_PID -- CMD ...")
    cmd = sys.argv[3:]
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass
    if os.getppid() != parent:
        raise SystemExit(f"guard: parent {parent} is gone; not starting {cmd[0]}")
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
