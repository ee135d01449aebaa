"""The one file mode of everything the store writes: the per-cell result JSONs, failed attempts, and the DuckDB
index with its write-ahead log.

Results hold log tails, paths and every figure of a cell, and the index holds each result again (`result_json`):
on a shared machine both are the owner's unless the owner says otherwise. Before, the JSONs were 0600 (the
temporary file's mode) while DuckDB created the index with the process's umask (0644 under the usual 022),
readable by every user. Now both get FILE_MODE: 0600 by default, DQBENCH_FILE_MODE (octal, e.g. 0640 for a
group that shares a results folder) to widen it; execute bits and write access for others are refused.

DuckDB creates the index, its temporary rebuild and its WAL itself, with the umask; `created_with` sets the
umask to the mode for the length of the connection (the umask is process-wide: the store holds it only for
one ingest, in the thread that writes) and `restrict` applies the mode to files that existed before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from harness.errors import DQError

FILE_MODE_ENV = "DQBENCH_FILE_MODE"
DEFAULT_FILE_MODE = 0o600


def file_mode(env: Mapping[str, str] | None = None) -> int:
    """The mode of the store's files: DQBENCH_FILE_MODE (octal) or 0600."""
    raw = (os.environ if env is None else env).get(FILE_MODE_ENV, "").strip()
    if not raw:
        return DEFAULT_FILE_MODE
    try:
        mode = int(raw, 8)
    except ValueError:
        raise DQError(f"{FILE_MODE_ENV}={raw!r} is not an octal file mode (e.g. 0600, 0640)") from None
    if mode & ~0o777 or mode & 0o111 or mode & 0o002 or (mode & 0o600) != 0o600:
        raise DQError(
            f"{FILE_MODE_ENV}={raw!r}: result files must be readable and writable by their owner, never "
            "executable nor writable by others (e.g. 0600, 0640, 0660, 0644)"
        )
    return mode


@contextmanager
def created_with(mode: int) -> Iterator[None]:
    """Files created in this block (by this process, e.g. DuckDB's index and WAL) get at most `mode`."""
    old = os.umask(0o777 & ~mode)
    try:
        yield
    finally:
        os.umask(old)


def restrict(mode: int, *paths: Path) -> None:
    """Give the existing files among `paths` exactly `mode` (files made before the store had one mode)."""
    for p in paths:
        try:
            if p.is_file() and (p.stat().st_mode & 0o777) != mode:
                os.chmod(p, mode)
        except OSError:
            pass  # another user's file in a shared folder: left as it is
