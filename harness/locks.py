"""Inter-process locks and unique temporary names for everything that several processes may write.

`file_lock` is an advisory `flock` on a file beside what it guards: the kernel drops it when its holder dies
(SIGKILL, OOM), so a crashed run never leaves a stale lock, and the next holder finds whatever the dead one
left half-done and cleans up after it. The holder writes its pid and command into the lock file, so a
waiter can say who it waits for. Ray tasks on one node and two `harness` commands share these locks; Ray
workers on different nodes share them only through a shared filesystem that honours flock (NFSv4 does).

`unique_tmp` names a temporary file or folder that no other process picks: a fixed `.tmp` name is a race
as soon as two writers exist. No heavy imports: stages of every environment import this module.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import DQError


class LockTimeout(DQError):
    """A lock was not free within its timeout; the message names the lock and its holder."""


def holder(path: Path) -> str:
    """Who holds (or last held) the lock at `path`, as its holder wrote it: 'pid N: command'."""
    try:
        return path.read_text(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def file_lock(path: Path, *, what: str, timeout: float | None = None, poll: float = 0.5,
              on_wait: Callable[[str], None] | None = None) -> Iterator[int]:
    """Hold an exclusive lock on `path` for the block. Waits up to `timeout` seconds (None: for ever,
    0: not at all) and then raises LockTimeout naming `what` and the holder. `on_wait(message)` is called
    once when the lock is busy, so a long wait is never silent. Yields the lock's descriptor: a child given
    it (`pass_fds`, harness/proc.children_hold) keeps the lock held until the child too is gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(f"{what} is locked by {holder(path)} (lock {path}); wait for it to "
                                      f"finish, or stop it") from None
                if not told and on_wait is not None:
                    on_wait(f"waiting for {what}: locked by {holder(path)} (lock {path})")
                    told = True
                time.sleep(poll)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode(), 0)
        except OSError:
            pass
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def unique_tmp(final: Path) -> Path:
    """A sibling of `final` no other process will choose: `.NAME.PID.RANDOM.tmp` (hidden, same filesystem,
    so `os.replace` onto `final` is atomic)."""
    return final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
