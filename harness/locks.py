"""Inter-process locks and unique temporary names for everything that several processes may write.

`file_lock` is an advisory `flock` on a file beside what it guards: the kernel drops it when its holder dies
(SIGKILL, OOM), so a crashed run never leaves a stale lock, and the next holder finds whatever the dead one
left half-done and cleans up after it. The holder writes its pid and command into the lock file, so a
waiter can say who it waits for. Ray tasks on one node and two `harness` commands share these locks; Ray
workers on different nodes share them only through a shared filesystem that honours flock (NFSv4 does).

`unique_tmp` names a temporary file or folder that no other process picks: a fixed `.tmp` name is a race
as soon as two writers exist.

`build_once` is how every shared cache entry (prepared data, the embedded model, students, teacher logits
and generations, GGUF conversions, compressed artefacts) is made: check, then lock the entry's lock file
(`NAME.lock` beside it) for the whole check-then-build, clean what dead builders left, build into a
unique temporary name, publish it with one rename. A waiter says once whom it waits for and then finds the
entry built. `valid` decides whether an entry is trusted: a manifest written last that lists files with
their sizes (`file_sizes`, `sizes_match`), so a manifest over missing files is rebuilt, not used.

A worker subprocess outlives a parent killed with SIGKILL (it runs in its own process group): it holds a
builder lock (`DQBENCH_BUILDER_LOCK`, taken first thing in `harness/worker.py`) beside its temporary name, and
the next lock holder waits for that orphan to end before it removes its leftovers.

No heavy imports: workers of every environment import this module.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
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
def file_lock(
    path: Path,
    *,
    what: str,
    timeout: float | None = None,
    poll: float = 0.5,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[int]:
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
                    raise LockTimeout(
                        f"{what} is locked by {holder(path)} (lock {path}); wait for it to finish, or stop it"
                    ) from None
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


# ---------------------------------------------------------------------------------------------- cache entries

BUILDER_LOCK_ENV = "DQBENCH_BUILDER_LOCK"
_HELD: list[int] = []  # builder-lock fds a stage keeps open for its whole life (the kernel drops them at exit)


def lock_for(final: Path) -> Path:
    """The lock file guarding the cache entry `final`: `NAME.lock` beside it (never deleted: a waiter may
    hold it open)."""
    return final.with_name(f"{final.name}.lock")


def builder_lock(tmp: Path) -> Path:
    """The lock a stage building into `tmp` holds for its life (sibling of `tmp`, so a file or a folder)."""
    return tmp.with_name(f"{tmp.name}.lock")


def hold_builder_lock(path: str | Path) -> None:
    """Take the builder lock `path` for the rest of this process (workers call this through
    harness/worker.py when their parent named one)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)  # unique per build: busy only if a parent reused a name; building unguarded is no worse
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode(), 0)
    _HELD.append(fd)


def remove(path: Path) -> None:
    """Delete a file or a folder tree; absent is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def leftovers(final: Path) -> list[Path]:
    """What builders of `final` may have left beside it: unique_tmp names (with their builder locks) and the
    fixed names earlier versions used (`NAME.partial` for folders, `STEM.tmp` for files)."""
    if not final.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(final.name)}\.\d+\.[0-9a-f]{{8}}\.tmp(\.lock)?")
    found = [p for p in final.parent.iterdir() if pattern.fullmatch(p.name)]
    found += [
        p
        for p in {final.with_name(f"{final.name}.partial"), final.with_suffix(".tmp")}
        if p != final and (p.exists() or p.is_symlink())
    ]
    return sorted(found)


def clean_leftovers(final: Path, on_wait: Callable[[str], None] | None = None) -> list[Path]:
    """Remove what dead builders of `final` left; returns what was removed. Call it only while holding
    `lock_for(final)`: every builder holds that lock for its whole build, so whatever lies here now belongs
    to a process that is gone -- except a stage it started, which may still write; its builder lock is
    waited for first."""
    gone = []
    for p in leftovers(final):
        if p.name.endswith(".tmp.lock"):
            continue  # handled with its tmp (or below when the tmp is already gone)
        lock = builder_lock(p)
        if lock.is_file():
            with file_lock(lock, what=f"an orphaned builder of {final.name} (its parent died)", on_wait=on_wait):
                pass
        remove(p)
        gone.append(p)
    for p in leftovers(final):  # builder locks whose tmp is gone (or was never made)
        if p.name.endswith(".tmp.lock"):
            with file_lock(p, what=f"an orphaned builder of {final.name} (its parent died)", on_wait=on_wait):
                pass
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def publish(tmp: Path, final: Path) -> None:
    """Move the finished `tmp` onto `final` with one rename. A file replaces atomically; a folder cannot
    replace a non-empty folder, so an old (invalid) `final` is first renamed aside and deleted after:
    `final` is at every moment the old entry, absent, or the new one, never a mix."""
    if tmp.is_dir() and (final.exists() or final.is_symlink()):
        aside = unique_tmp(final)
        os.rename(final, aside)
        os.rename(tmp, final)
        remove(aside)
    else:
        os.replace(tmp, final)


def build_once(
    final: Path,
    *,
    what: str,
    valid: Callable[[Path], bool],
    build: Callable[[Path], object],
    on_wait: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> bool:
    """Make the cache entry `final` unless a valid one exists; True when this call built it.

    `build(tmp)` writes the whole entry (a file or a folder, its manifest last) at the unique name `tmp`;
    it may return a callable, run after the publish, for a manifest kept outside the entry. Waiters block
    for `timeout` seconds (None: as long as a build takes; builds can take hours) and are told once, through
    `on_wait`, who holds the lock."""
    if valid(final):
        return False
    with file_lock(lock_for(final), what=what, timeout=timeout, on_wait=on_wait):
        if valid(final):  # built by the process we waited for
            return False
        clean_leftovers(final, on_wait)
        tmp = unique_tmp(final)
        try:
            after = build(tmp)
            if not (tmp.exists() or tmp.is_symlink()):
                raise DQError(f"{what}: the build wrote nothing at {tmp}")
            publish(tmp, final)
            if callable(after):
                after()
        finally:
            remove(tmp)
            builder_lock(tmp).unlink(missing_ok=True)
        if not valid(final):
            raise DQError(
                f"{what}: built, but {final} is incomplete (its manifest lists files that are not "
                f"there); the build's log says why"
            )
        return True


def file_sizes(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, int]:
    """Every file under `folder` (relative POSIX path -> bytes), for a manifest; `skip` names to leave out
    (the manifest itself)."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def sizes_match(folder: Path, sizes: object) -> bool:
    """True when `sizes` (a manifest's name -> bytes) is a non-empty mapping and each file is there with that
    size: a manifest is trusted only over what it lists."""
    if not isinstance(sizes, dict) or not sizes:
        return False
    try:
        return all((folder / name).stat().st_size == size for name, size in sizes.items())
    except OSError:
        return False


def listed_present(folder: Path, manifest: dict | None, files_key: str = "files") -> bool:
    """Whether `folder` holds what `manifest` lists: each file with its size (`sizes`), or, for a manifest
    written before sizes were recorded, each file named in `files_key` (a non-empty mapping)."""
    if manifest is None:
        return False
    if "sizes" in manifest:
        return sizes_match(folder, manifest["sizes"])
    listed = manifest.get(files_key)
    return isinstance(listed, dict) and bool(listed) and all((folder / n).is_file() for n in listed)


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None when it is absent or unreadable (an invalid manifest)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def wait_reporter(log: Path | None = None) -> Callable[[str], None]:
    """An `on_wait` for builds: the message goes to `log` (the stage's log file) and to the cell's live
    progress line when one is installed (harness.proc.progress_to); inside a stage, to its progress file and
    its log (stdout); elsewhere to stderr (a Ray worker's stderr reaches the driver's console)."""

    def report(msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        if log is not None:
            try:
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass
        from harness import proc

        rec = {"what": msg, "unit": "", "done": "", "total": None, "t": round(time.time(), 3)}
        sink = proc.progress_sink()  # the cell's live line, where stages report theirs
        if sink is not None:
            sink(rec)
        elif os.environ.get(proc.PROGRESS_ENV):
            proc.WorkerProgress(msg).update(0, force=True)
            print(line, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return report
