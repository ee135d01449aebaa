"""A second process holding a write connection to a DuckDB file, as a `duckdb` shell or a notebook left
open does: while it lives, no other process can open the file, not even read-only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def held(path: Path) -> Iterator[int]:
    """Hold `path` (created if missing) for the block; yields the holder's pid."""
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); c.execute('SELECT 1'); "
        "print('locked', flush=True); time.sleep(600)"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked", "the holder process did not open the database"
        yield p.pid
    finally:
        p.kill()
        p.wait(timeout=30)
