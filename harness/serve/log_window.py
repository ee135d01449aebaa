"""A server's log as the cell reads it while the server runs: incrementally, within a bound.

The server log is appended to by every attempt and by a long run (vLLM logs a line per few seconds, a
failing engine a traceback per request), and it is looked at often: the server watch after every step, the
root cause of a failure, the failure tail. Reading the whole tail each time reread the same bytes over and
over, and `read_text()` of the whole file (the engine-config check) read every earlier attempt's part too.
`LogWindow` keeps the last `keep` bytes since the server started and reads only what the file gained since
its last look; `head` reads this server's first bytes once (where the engine prints its config).
"""

from __future__ import annotations

import os
from pathlib import Path

KEEP_BYTES = 256 * 1024


class LogWindow:
    """The last `keep` bytes of a growing file from `offset` on (this server's part of an appended log)."""

    def __init__(self, path: Path, offset: int = 0, keep: int = KEEP_BYTES) -> None:
        self.path, self.offset, self.keep = Path(path), offset, keep
        self._pos = offset  # how far the file has been read
        self._buf = b""
        self.bytes_read = 0  # what the looks have read in all (tests: a look reads only what is new)

    def _refresh(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return
        if size < self._pos:  # truncated or replaced: start again from this server's offset (or the start)
            self._pos, self._buf = (self.offset if size >= self.offset else 0), b""
        if size == self._pos:
            return
        start = max(self._pos, size - self.keep)
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                chunk = f.read(size - start)
        except OSError:
            return
        self.bytes_read += len(chunk)
        self._buf = (chunk if start > self._pos else self._buf + chunk)[-self.keep :]
        self._pos = start + len(chunk)

    def text(self, max_bytes: int | None = None) -> str:
        """The window's text (its last `max_bytes`), after reading what the file gained."""
        self._refresh()
        buf = self._buf if max_bytes is None else self._buf[-max_bytes:]
        return buf.decode("utf-8", "replace")


def head(path: Path, offset: int = 0, max_bytes: int = 4 * 2**20) -> str:
    """The first `max_bytes` of `path` from `offset` on (a server's start-up lines, its config among them)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(max_bytes).decode("utf-8", "replace")
    except OSError:
        return ""
