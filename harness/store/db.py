"""DuckDB index of the per-(cell, host) results: queryable, rebuildable, one writer. This module owns the
connection (bounded waits, one clear error), the ingest (one transaction) and `rebuild`; the tables are in
harness/store/schema.py and the rows, built from a CellResult, in harness/store/rows.py.

The writer opens the database only for the length of one ingest (a transaction), so readers
(dashboard, advisor) can open it read-only between writes. `rebuild` recreates it from the JSON results
alone: every row derives from a CellResult, per-item scores included (they live in the result), so
deleting results/work/ changes nothing in the index.

The key of every per-cell table is (cell_id, host_id): the same cell measured on two hosts is two rows,
and joins between these tables must include host_id. There is no PRIMARY KEY constraint: an ingest
deletes the (cell_id, host_id) rows and inserts them again in one transaction, which keeps them unique.
Rows of results from before host fingerprints (schema 1, or an index written by an older dqbench) carry
host_id 'unknown'.

The index is never the only copy of anything, so its problems are reported, not fatal: every DuckDB
error on opening or reading it (the file held by another process's write connection, not a DuckDB file,
damaged, missing) becomes one IndexUnavailable naming the path and the fix. Waits for a busy file are
bounded (WRITE_WAIT_S, READ_WAIT_S): a `duckdb` shell left open must not stall a run for long.

Every connection is opened with DuckDB's external access off (`enable_external_access=false`): a results file
handed over by someone else, whose `cells` is a view over `read_text('/etc/...')` or `read_csv` of a URL,
fails to query instead of showing local files in the dashboard or the advisor. The index and its WAL are
written with the store's one file mode (harness/store/files.py).
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from harness.errors import DQError
from harness.locks import unique_tmp
from harness.result import CellResult
from harness.store.files import created_with, file_mode, restrict
from harness.store.hosts import normalized_host
from harness.store.results import parse
from harness.store.rows import cell_row, flip_rows, item_rows, perf_rows, quality_rows
from harness.store.schema import (
    CELL_COLS,
    FLIP_COLS,
    HOST_COLS,
    ITEM_COLS,
    PERF_COLS,
    QUALITY_COLS,
    SENS_COLS,
    TABLES,
    columns,
    ensure_schema,
)

__all__ = [
    "CELL_COLS",
    "FLIP_COLS",
    "HOST_COLS",
    "ITEM_COLS",
    "PERF_COLS",
    "QUALITY_COLS",
    "SENS_COLS",
    "TABLES",
    "IndexUnavailable",
    "Rebuilt",
    "connect_read_only",
    "ensure_schema",
    "ingest",
    "ingest_sensitivity",
    "is_duckdb_file",
    "reading",
    "rebuild",
    "unavailable",
]

# how long one open waits for another process's connection to go away: an ingest or a dashboard read
# holds the file for a moment, while a `duckdb` shell or notebook may hold it for hours, so waits are short
WRITE_WAIT_S = 3.0
READ_WAIT_S = 5.0
MAGIC = b"DUCK"  # a DuckDB database file has these bytes at offset 8 (its main header)
REBUILD_FIX = "`harness db rebuild` recreates the index from the JSON results (results/cells/*.json)"


class IndexUnavailable(DQError):
    """The DuckDB index cannot be opened or read. `problem` says what (naming the path), `fix` what to do;
    `kind` is locked | missing | not_duckdb | damaged | not_index | other. Exit code 3, as for no results."""

    exit_code = 3

    def __init__(self, path: Path, kind: str, problem: str, fix: str) -> None:
        self.path, self.kind, self.problem, self.fix = Path(path), kind, problem, fix
        super().__init__(f"{problem}; {fix}")


def is_duckdb_file(path: Path) -> bool:
    """A regular file with DuckDB's magic bytes: checked before handing a path typed by a person to DuckDB."""
    try:
        p = Path(path)
        if not p.is_file():
            return False
        with open(p, "rb") as f:
            return f.read(12)[8:12] == MAGIC
    except OSError:
        return False


def unavailable(exc: BaseException, path: Path) -> IndexUnavailable:
    """The one clear error for a DuckDB error on the index at `path` (exceptions already converted pass)."""
    import duckdb

    if isinstance(exc, IndexUnavailable):
        return exc
    path = Path(path)
    text = str(exc).strip()
    low = text.lower()
    if isinstance(exc, duckdb.IOException) and "lock" in low:
        m = re.search(r"held in (.+?) \(PID (\d+)\)", text)
        who = f"PID {m.group(2)}, {m.group(1)}" if m else "another process"
        return IndexUnavailable(
            path,
            "locked",
            f"the results index {path} is locked by {who}, which holds a "
            f"write connection to it (a `duckdb` shell, a notebook)",
            "close that connection and try again (`harness run` holds it only for a moment per cell)",
        )
    if not path.exists():
        return IndexUnavailable(
            path,
            "missing",
            f"no results database at {path}",
            "run `./dq run` (or `harness run MATRIX`) first, or point DQBENCH_DB (advisor: --db) at one",
        )
    if "not a valid duckdb database" in low or not is_duckdb_file(path):
        return IndexUnavailable(
            path,
            "not_duckdb",
            f"{path} is not a DuckDB database",
            f"point DQBENCH_DB (advisor: --db) at the results index, or move this file away; {REBUILD_FIX}",
        )
    if isinstance(exc, duckdb.CatalogException):
        return IndexUnavailable(
            path,
            "not_index",
            f"{path} is a DuckDB database but not a dqbench results index ({text.splitlines()[0][:200]})",
            f"point DQBENCH_DB (advisor: --db) at the results index; {REBUILD_FIX}",
        )
    if "corrupt" in low or "checksum" in low or "serializ" in low:
        return IndexUnavailable(
            path,
            "damaged",
            f"the results index {path} is damaged ({text.splitlines()[0][:200]})",
            f"move it away; {REBUILD_FIX}",
        )
    return IndexUnavailable(
        path,
        "other",
        f"cannot use the results index {path} ({type(exc).__name__}: {text.splitlines()[0][:200] if text else ''})",
        REBUILD_FIX,
    )


def _connect(path: Path, read_only: bool = False, wait: float | None = None):
    """A connection; while another process holds the file, retry for up to `wait` seconds (0: once;
    None: READ_WAIT_S or WRITE_WAIT_S). Any DuckDB error becomes IndexUnavailable."""
    import duckdb

    if wait is None:
        wait = READ_WAIT_S if read_only else WRITE_WAIT_S
    deadline = time.monotonic() + wait
    while True:
        try:
            # external access off: a database file is data, never a way to read other files (a view over
            # read_text) or to load extensions; the index needs nothing outside itself
            return duckdb.connect(str(path), read_only=read_only, config={"enable_external_access": False})
        except duckdb.Error as exc:
            busy = isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()
            if not busy or time.monotonic() >= deadline:
                raise unavailable(exc, path) from exc
            time.sleep(0.25)


def connect_read_only(path: Path, wait: float | None = None):
    return _connect(Path(path), read_only=True, wait=wait)


@contextmanager
def reading(path: Path, wait: float | None = None):
    """A read-only connection for the block; a DuckDB error while opening or querying (a damaged block is
    found only when read, a foreign DuckDB file has no `cells`) becomes IndexUnavailable."""
    import duckdb

    con = connect_read_only(path, wait)
    try:
        yield con
    except duckdb.Error as exc:
        raise unavailable(exc, path) from exc
    finally:
        con.close()


def _insert(con: Any, table: str, cols: dict[str, str], rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    names = list(cols)
    con.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
        [[r.get(n) for n in names] for r in rows],
    )


@contextmanager
def _transaction(db_path: Path, wait: float | None = None):
    """A write connection with the schema in place and one transaction: all or nothing."""
    import duckdb

    db_path.parent.mkdir(parents=True, exist_ok=True)
    mode = file_mode()
    # DuckDB creates the file, a rebuild's temporary one and the WAL itself: with the store's mode, not the
    # umask's (harness/store/files.py); a file an older dqbench made gets the mode too
    with created_with(mode):
        restrict(mode, db_path, _wal(db_path))
        con = _connect(db_path, wait=wait)
        try:
            ensure_schema(con)
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException as exc:
            try:
                con.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            if isinstance(exc, duckdb.Error):
                raise unavailable(exc, db_path) from exc
            raise
        finally:
            con.close()


Pair = tuple[dict[str, Any], CellResult | dict[str, Any] | None]  # (a CellPlan's JSON dump, its result or None)


def ingest(db_path: Path, items: list[Pair], host: dict[str, Any] | None = None, wait: float | None = None) -> None:
    """Upsert (plan, result) pairs in one transaction: a failure leaves the previous index intact.

    A pair's row is keyed by (cell_id, host_id): a result's own host, or `host` (a HostCaps.host_block(),
    normally this host's) for a planned or infeasible cell that has no result yet. A result given as a
    dict is read as the store reads a file (older schemas upgraded). `wait`: seconds to wait for another
    process's connection to go away (None: WRITE_WAIT_S) before raising IndexUnavailable."""
    with _transaction(db_path, wait) as con:
        _upsert(con, items, host)


def _as_result(result: CellResult | dict[str, Any]) -> CellResult:
    """The result with its host block normalised (an id and a label), as the store writes it."""
    r = result if isinstance(result, CellResult) else parse(result)
    return r.model_copy(update={"host": normalized_host({"host": r.host})})


def _upsert(con: Any, items: list[Pair], host: dict[str, Any] | None) -> set[tuple[str, str]]:
    """The rows of `items` (later items win); returns the (cell_id, host_id) keys written."""
    hosts: dict[str, tuple[dict[str, Any], list[str]]] = {}  # host_id -> (latest block, finish times)
    keys = set()
    for plan, given in items:
        cid = plan["cell_id"]
        result = _as_result(given) if given is not None else None
        if result is not None:
            h = result.host or {}
        elif host is not None:
            h = normalized_host({"host": host})
        else:
            raise ValueError(
                f"ingest: cell {cid} has no result, so its row needs a host: pass host= "
                f"(the runner passes this host's HostCaps.host_block())"
            )
        hid = h["host_id"]
        keys.add((cid, hid))
        for t in TABLES:
            con.execute(f"DELETE FROM {t} WHERE cell_id = ? AND host_id = ?", [cid, hid])
        _insert(con, "cells", CELL_COLS, [cell_row(plan, result, h)])
        times = hosts.setdefault(hid, (h, []))[1]
        hosts[hid] = (h, times)
        if result is not None:
            if result.finished_at:
                times.append(result.finished_at)
            _insert(con, "perf", PERF_COLS, perf_rows(result))
            _insert(con, "quality", QUALITY_COLS, quality_rows(result))
            _insert(con, "flips", FLIP_COLS, flip_rows(result))
            _insert(con, "items", ITEM_COLS, item_rows(result))
    for h, times in hosts.values():
        _upsert_host(con, h, times)
    return keys


def _upsert_host(con, h: dict, seen: list[str]) -> None:
    """The host's row: its latest label and fingerprint, and the span of its results' finish times."""
    old = con.execute("SELECT first_seen, last_seen FROM hosts WHERE host_id = ?", [h["host_id"]]).fetchone()
    first, last = old if old else (None, None)
    if seen:  # ISO-8601 UTC strings sort as times
        first = min(first, *seen) if first else min(seen)
        last = max(last, *seen) if last else max(seen)
    con.execute("DELETE FROM hosts WHERE host_id = ?", [h["host_id"]])
    _insert(
        con,
        "hosts",
        HOST_COLS,
        [
            {
                "host_id": h["host_id"],
                "label": h.get("label"),
                "fingerprint": json.dumps(h.get("fingerprint") or {}, sort_keys=True),
                "source": h.get("source"),
                "reference_dtype": h.get("reference_dtype"),
                "first_seen": first,
                "last_seen": last,
            }
        ],
    )


def ingest_sensitivity(db_path: Path, scans: list[dict]) -> None:
    """Upsert sensitivity scans (one row per layer), in one transaction."""
    with _transaction(db_path) as con:
        _upsert_scans(con, scans)


def _upsert_scans(con, scans: list[dict]) -> None:
    for s in scans:
        con.execute("DELETE FROM sensitivity WHERE scan_id = ?", [s["scan_id"]])
        rank = {layer: i + 1 for i, layer in enumerate(s["ranked"])}
        _insert(
            con,
            "sensitivity",
            SENS_COLS,
            [
                {
                    "scan_id": s["scan_id"],
                    "model": s["model"],
                    "method": s["method"],
                    "precision": s["precision"],
                    **r,
                    "rank": rank[r["layer"]],
                }
                for r in s["layers"]
            ],
        )


class Rebuilt(NamedTuple):
    results: int  # result files indexed
    carried: int  # planned/infeasible rows kept from the old index
    note: str | None  # why nothing could be carried (the old index was unreadable), else None


def _plan_rows(db_path: Path) -> tuple[list[dict], dict[str, dict]]:
    """The old index's planned and infeasible rows (cells with no result: only `harness run`'s plan ingest
    writes them, the JSONs do not hold them) and the host rows they name."""
    with reading(db_path) as con:
        cols = columns(con, "cells")
        if "host_id" not in cols or "status" not in cols:  # no index, or one from before hosts: the migration
            return [], {}  # drops such rows too (see _drop_cell_primary_key)
        keep = [c for c in cols if c in CELL_COLS]
        rows = [
            dict(zip(keep, r))
            for r in con.execute(
                f"SELECT {', '.join(keep)} FROM cells WHERE status IN ('planned', 'infeasible')"
            ).fetchall()
        ]
        hosts: dict[str, dict] = {}
        hcols = [c for c in columns(con, "hosts") if c in HOST_COLS]
        if "host_id" in hcols:
            for r in con.execute(f"SELECT {', '.join(hcols)} FROM hosts").fetchall():
                hosts[r[hcols.index("host_id")]] = dict(zip(hcols, r))
    return rows, hosts


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def rebuild(
    db_path: Path, results: list[CellResult] | list[dict[str, Any]], scans: list[dict[str, Any]] | None = None
) -> Rebuilt:
    """Recreate the index from the stored results (ResultStore.all(): the plan of each cell and its per-item
    scores are inside its result, so nothing under results/work/ is read) and
    sensitivity scans, keeping the old index's planned and infeasible rows (cells not yet run, and cells
    this host cannot run, with the reason) that no result replaces.

    The new index is built in a uniquely named file beside the old one and renamed over it: a crash
    mid-rebuild leaves the old index as it was (and a temporary file the next rebuild removes). The
    caller holds the results writer lock (harness/runner.py writer_lock): leftover temporary files are
    then a dead rebuild's. An old index another process holds open for writing is refused, not replaced:
    that process would go on writing (its WAL by name) into a file that is no longer the index."""
    db_path = Path(db_path)
    typed = [_as_result(r) for r in results]  # a document given as a dict is read as the store reads a file
    for stale in db_path.parent.glob(f".{db_path.name}.*.tmp*"):  # see unique_tmp; `.wal` siblings too
        stale.unlink(missing_ok=True)
    rows: list[dict[str, Any]] = []
    old_hosts: dict[str, dict[str, Any]] = {}
    note: str | None = None
    if db_path.exists():
        try:
            rows, old_hosts = _plan_rows(db_path)
        except IndexUnavailable as exc:
            if exc.kind == "locked":
                raise IndexUnavailable(
                    db_path, exc.kind, exc.problem, "close that connection, then run `harness db rebuild` again"
                ) from exc
            note = (
                f"the old index could not be read ({exc.problem}), so its planned and infeasible rows are "
                f"not kept: the next `harness run` of their matrix writes them again"
            )
    tmp = unique_tmp(db_path)
    try:
        with _transaction(tmp) as con:
            have = _upsert(con, [(r.plan, r) for r in typed], None)
            carried = [r for r in rows if (r["cell_id"], r["host_id"]) not in have]
            _insert(con, "cells", CELL_COLS, carried)
            known = {r[0] for r in con.execute("SELECT host_id FROM hosts").fetchall()}
            _insert(
                con,
                "hosts",
                HOST_COLS,
                [old_hosts[h] for h in {r["host_id"] for r in carried} if h in old_hosts and h not in known],
            )
            _upsert_scans(con, scans or [])
        aside = None
        if _wal(db_path).exists():  # the old file's log must never be replayed into the new file: set it aside
            aside = unique_tmp(_wal(db_path))
            _wal(db_path).replace(aside)
        os.replace(tmp, db_path)
        _fsync_dir(db_path.parent)
        if aside is not None:
            aside.unlink(missing_ok=True)
    finally:
        for p in (tmp, _wal(tmp)):
            p.unlink(missing_ok=True)
    return Rebuilt(len(typed), len(carried), note)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every filesystem lets a folder be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
