"""DuckDB index of the per-(cell, host) JSON results: queryable, rebuildable, one writer.

The writer opens the database only for the length of one ingest (a transaction), so readers
(dashboard, advisor) can open it read-only between writes. `rebuild` recreates it from the JSON files.
Tables: cells (one row per planned cell and host, flat headline metrics and a student's lineage and
training), perf (one row per load level), quality (one row per task x metric), flips (one row per task x
metric vs the reference), items (one row per scored item: drill-down of flips), hosts (one row per host
id: label, fingerprint, first/last result), meta (schema version).

The key of every per-cell table is (cell_id, host_id): the same cell measured on two hosts is two rows,
and joins between these tables must include host_id. There is no PRIMARY KEY constraint: an ingest
deletes the (cell_id, host_id) rows and inserts them again in one transaction, which keeps them unique.
Rows of results from before host fingerprints (schema 1, or an index written by an older dqbench) carry
host_id 'unknown'.

The index is never the only copy of anything, so its problems are reported, not fatal: every DuckDB
error on opening or reading it (the file held by another process's write connection, not a DuckDB file,
damaged, missing) becomes one IndexUnavailable naming the path and the fix. Waits for a busy file are
bounded (WRITE_WAIT_S, READ_WAIT_S): a `duckdb` shell left open must not stall a run for long.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from harness.errors import DQError
from harness.locks import unique_tmp
from harness.store.hosts import UNKNOWN_HOST_ID, UNKNOWN_LABEL, normalized_host
from harness.store.results import SCHEMA_VERSION, flat_metrics, upgrade

CELL_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "host_label": "VARCHAR",
    "matrix": "VARCHAR",
    "model": "VARCHAR",
    "precision": "VARCHAR",
    "method": "VARCHAR",
    "method_kind": "VARCHAR",
    "distill": "VARCHAR",
    "engine": "VARCHAR",
    "device": "VARCHAR",
    "status": "VARCHAR",
    "reason": "VARCHAR",
    "parent_id": "VARCHAR",
    "est_mem_gib": "DOUBLE",
    "ttft_ms_p50": "DOUBLE",
    "ttft_ms_p99": "DOUBLE",
    "tpot_ms_p50": "DOUBLE",
    "tpot_ms_p99": "DOUBLE",
    "itl_ms_p50": "DOUBLE",
    "itl_ms_p99": "DOUBLE",
    "e2e_ms_p50": "DOUBLE",
    "e2e_ms_p99": "DOUBLE",
    "output_tok_s": "DOUBLE",
    "req_s": "DOUBLE",
    "top_concurrency": "DOUBLE",
    "failed_requests": "INTEGER",
    "peak_mem_gib": "DOUBLE",
    "gpu_peak_gib": "DOUBLE",
    "size_gib": "DOUBLE",
    "bits_per_weight": "DOUBLE",
    "startup_s": "DOUBLE",
    "params": "BIGINT",
    "kv_bytes_per_token": "DOUBLE",
    "lm_eval_version": "VARCHAR",
    "git_sha": "VARCHAR",
    "schema_version": "INTEGER",
    "artefact_model": "VARCHAR",
    "finished_at": "VARCHAR",
    "wall_s": "DOUBLE",
    "result_json": "VARCHAR",
    # against the reference (harness/evaluate/reference.py): distribution shift and the paired drop
    "kld_mean": "DOUBLE",
    "kld_p99": "DOUBLE",
    "top1_agreement": "DOUBLE",
    "dp_rms": "DOUBLE",
    "ppl_ratio": "DOUBLE",
    "paired_drop": "DOUBLE",
    "paired_drop_ci_lo": "DOUBLE",
    "paired_drop_ci_hi": "DOUBLE",
    "compress_s": "DOUBLE",
    "scored_by": "VARCHAR",
    # students (harness/distill): lineage teacher -> student -> quantized student, and what training did
    "teacher_id": "VARCHAR",
    "distill_kind": "VARCHAR",
    "student_key": "VARCHAR",
    "train_tokens": "BIGINT",
    "train_s": "DOUBLE",
    "train_loss_final": "DOUBLE",
    "heldout_ce": "DOUBLE",
    "ref_gpu_hours": "DOUBLE",
    "ref_usd": "DOUBLE",
}
FLIP_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "ref_id": "VARCHAR",
    "task": "VARCHAR",
    "metric": "VARCHAR",
    "n": "INTEGER",
    "ref_correct_cell_wrong": "INTEGER",
    "ref_wrong_cell_correct": "INTEGER",
    "flip_rate": "DOUBLE",
    "drop_abs": "DOUBLE",
    "drop_rel": "DOUBLE",
    "drop_ci_lo": "DOUBLE",
    "drop_ci_hi": "DOUBLE",
    "ci": "VARCHAR",
}
ITEM_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "task": "VARCHAR",
    "doc_id": "INTEGER",
    "metric": "VARCHAR",
    "value": "DOUBLE",
}
PERF_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "profile": "VARCHAR",
    "level": "DOUBLE",
    "requests": "INTEGER",
    "completed": "INTEGER",
    "failed": "INTEGER",
    "duration_s": "DOUBLE",
    "req_s": "DOUBLE",
    "output_tok_s": "DOUBLE",
    "input_tok_s": "DOUBLE",
    **{f"{m}_ms_{s}": "DOUBLE" for m in ("ttft", "tpot", "itl", "e2e") for s in ("mean", "p50", "p90", "p99")},
}
QUALITY_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "task": "VARCHAR",
    "metric": "VARCHAR",
    "value": "DOUBLE",
    "stderr": "DOUBLE",
    "n": "INTEGER",
    "n_total": "INTEGER",
    "limit_items": "INTEGER",
    "num_fewshot": "INTEGER",
    "task_hash": "VARCHAR",
    "lm_eval_version": "VARCHAR",
}
# the mixed-precision helper's per-layer scans (harness/plan/sensitivity.py): keyed by scan, not by cell
SENS_COLS = {
    "scan_id": "VARCHAR",
    "model": "VARCHAR",
    "method": "VARCHAR",
    "precision": "VARCHAR",
    "layer": "INTEGER",
    "params": "BIGINT",
    "kld_mean": "DOUBLE",
    "top1_agreement": "DOUBLE",
    "ppl_ratio": "DOUBLE",
    "rank": "INTEGER",
}
TABLES = {"cells": CELL_COLS, "perf": PERF_COLS, "quality": QUALITY_COLS, "flips": FLIP_COLS, "items": ITEM_COLS}
# one row per host id; first_seen/last_seen are the earliest/latest finished_at of its results (not the
# ingest time), so `harness db rebuild` reproduces the table from the JSONs
HOST_COLS = {
    "host_id": "VARCHAR PRIMARY KEY",
    "label": "VARCHAR",
    "fingerprint": "VARCHAR",
    "source": "VARCHAR",
    "reference_dtype": "VARCHAR",
    "first_seen": "VARCHAR",
    "last_seen": "VARCHAR",
}


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
            return duckdb.connect(str(path), read_only=read_only)
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


def ensure_schema(con) -> None:
    """Create the index's tables (or bring an index written by an older dqbench up to date)."""
    _drop_cell_primary_key(con)
    for name, cols in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(f'{k} {v}' for k, v in cols.items())})")
        # an index written by an older dqbench: add the columns it lacks (additive changes only)
        have = _columns(con, name)
        for k, v in cols.items():
            if k not in have:
                con.execute(f"ALTER TABLE {name} ADD COLUMN {k} {v.replace(' PRIMARY KEY', '')}")
                if k == "host_id":  # rows from before host fingerprints: the host was not recorded
                    con.execute(f"UPDATE {name} SET host_id = ?", [UNKNOWN_HOST_ID])
    con.execute(f"CREATE TABLE IF NOT EXISTS hosts ({', '.join(f'{k} {v}' for k, v in HOST_COLS.items())})")
    con.execute(f"CREATE TABLE IF NOT EXISTS sensitivity ({', '.join(f'{k} {v}' for k, v in SENS_COLS.items())})")
    con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


def _columns(con, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table]
        ).fetchall()
    ]


def _drop_cell_primary_key(con) -> None:
    """Indexes before schema 2 keyed `cells` by cell_id alone (PRIMARY KEY), which forbids a second host's
    row. DuckDB cannot drop a constraint in place, so the table is copied into one without it."""
    pk = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'cells' AND constraint_type = 'PRIMARY KEY'"
    ).fetchone()[0]
    if not pk:
        return
    have = _columns(con, "cells")
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'cells'"
        ).fetchall()
    )
    extra = {c: types[c] for c in have if c not in CELL_COLS}  # a column this dqbench no longer writes: kept
    con.execute(f"CREATE TABLE cells_v2 ({', '.join(f'{k} {v}' for k, v in {**CELL_COLS, **extra}.items())})")
    con.execute(f"INSERT INTO cells_v2 ({', '.join(have)}) SELECT {', '.join(have)} FROM cells")
    if "host_id" not in have:
        con.execute("UPDATE cells_v2 SET host_id = ?, host_label = ?", [UNKNOWN_HOST_ID, UNKNOWN_LABEL])
        # rows with no result were only the old plan's: the next plan writes them again for its host, so
        # keeping them would show every pending cell twice
        con.execute("DELETE FROM cells_v2 WHERE result_json IS NULL AND status IN ('planned', 'infeasible')")
    con.execute("DROP TABLE cells")
    con.execute("ALTER TABLE cells_v2 RENAME TO cells")


def cell_row(plan: dict, doc: dict | None, host: dict) -> dict:
    """One `cells` row from a planned cell (dict of CellPlan), the host it is for and its result, if any."""
    m = flat_metrics(doc)
    est = plan.get("estimate") or {}
    env = (doc or {}).get("environment") or {}
    row = {
        "cell_id": plan["cell_id"],
        "host_id": host["host_id"],
        "host_label": host.get("label"),
        "matrix": plan["matrix"],
        "model": plan["model"]["name"],
        "precision": plan["precision"],
        "method": plan["method"],
        "method_kind": (plan.get("method_spec") or {}).get("kind", "none"),
        "distill": plan["distill"],
        "engine": plan["serving"]["kind"],
        "device": plan["device"],
        "status": (doc or {}).get("status") or plan.get("status", "planned"),
        "reason": (doc or {}).get("reason") or plan.get("reason"),
        "parent_id": plan.get("parent_id"),
        "est_mem_gib": est.get("total_gib"),
        "params": est.get("params"),
        "kv_bytes_per_token": _kv_bytes(plan.get("arch")),
        "lm_eval_version": ((doc or {}).get("quality") or {}).get("lm_eval_version"),
        "git_sha": env.get("git_sha"),
        "schema_version": (doc or {}).get("schema_version"),
        "artefact_model": ((doc or {}).get("artefact") or {}).get("model"),
        "finished_at": (doc or {}).get("finished_at"),
        "wall_s": (doc or {}).get("wall_s"),
        "scored_by": ((doc or {}).get("quality") or {}).get("scored_by"),
        "result_json": json.dumps(doc) if doc else None,
    }
    row.update({k: m.get(k) for k in CELL_COLS if k in m and k != "quality"})
    row["teacher_id"] = plan.get("teacher_id")  # known from the plan, before the cell has run
    return row


def _kv_bytes(arch: dict | None) -> float | None:
    """KV-cache bytes per token (16-bit KV) of the cell's stored architecture facts."""
    if not arch:
        return None
    from dataclasses import fields

    from harness.models.arch import ArchInfo

    return ArchInfo(**{f.name: arch[f.name] for f in fields(ArchInfo)}).kv_bytes_per_token()


def _insert(con, table: str, cols: dict, rows: list[dict]) -> None:
    if not rows:
        return
    names = list(cols)
    con.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
        [[r.get(n) for n in names] for r in rows],
    )


def perf_rows(cell_id: str, host_id: str, doc: dict) -> list[dict]:
    rows = []
    for lv in (doc.get("perf") or {}).get("levels") or []:
        r = {
            "cell_id": cell_id,
            "host_id": host_id,
            **{
                k: lv.get(k)
                for k in (
                    "profile",
                    "level",
                    "requests",
                    "completed",
                    "failed",
                    "duration_s",
                    "req_s",
                    "output_tok_s",
                    "input_tok_s",
                )
            },
        }
        for m in ("ttft", "tpot", "itl", "e2e"):
            for s, v in (lv.get(f"{m}_ms") or {}).items():
                r[f"{m}_ms_{s}"] = v
        rows.append(r)
    return rows


def quality_rows(cell_id: str, host_id: str, doc: dict) -> list[dict]:
    q = doc.get("quality") or {}
    rows = []
    for task, t in (q.get("tasks") or {}).items():
        for metric, mv in (t.get("metrics") or {}).items():
            rows.append(
                {
                    "cell_id": cell_id,
                    "host_id": host_id,
                    "task": task,
                    "metric": metric,
                    "value": mv.get("value"),
                    "stderr": mv.get("stderr"),
                    "n": t.get("n"),
                    "n_total": t.get("n_total"),
                    "limit_items": t.get("limit"),
                    "num_fewshot": t.get("num_fewshot"),
                    "task_hash": t.get("task_hash"),
                    "lm_eval_version": q.get("lm_eval_version"),
                }
            )
    return rows


def flip_rows(cell_id: str, host_id: str, doc: dict) -> list[dict]:
    shift = doc.get("shift") or {}
    rows = []
    for task, per_metric in ((shift.get("flips") or {}).get("tasks") or {}).items():
        for metric, f in per_metric.items():
            lo, hi = f.get("drop_ci95") or [None, None]
            rows.append(
                {
                    "cell_id": cell_id,
                    "host_id": host_id,
                    "ref_id": shift.get("reference"),
                    "task": task,
                    "metric": metric,
                    **{
                        k: f.get(k)
                        for k in (
                            "n",
                            "ref_correct_cell_wrong",
                            "ref_wrong_cell_correct",
                            "flip_rate",
                            "drop_abs",
                            "drop_rel",
                            "ci",
                        )
                    },
                    "drop_ci_lo": lo,
                    "drop_ci_hi": hi,
                }
            )
    return rows


def item_rows(cell_id: str, host_id: str, doc: dict) -> list[dict]:
    """Per-item 0/1 scores from the cell's lm-eval samples (skipped when the work folder is gone)."""
    rows = []
    for task, t in (((doc.get("quality") or {}).get("tasks")) or {}).items():
        path = Path(t.get("samples_path") or "")
        if not path.is_file():
            continue
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                for metric in ("acc", "acc_norm"):
                    v = r.get(metric)
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        rows.append(
                            {
                                "cell_id": cell_id,
                                "host_id": host_id,
                                "task": task,
                                "doc_id": r.get("doc_id"),
                                "metric": metric,
                                "value": float(v),
                            }
                        )
    return rows


@contextmanager
def _transaction(db_path: Path, wait: float | None = None):
    """A write connection with the schema in place and one transaction: all or nothing."""
    import duckdb

    db_path.parent.mkdir(parents=True, exist_ok=True)
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


def ingest(
    db_path: Path, items: list[tuple[dict, dict | None]], host: dict | None = None, wait: float | None = None
) -> None:
    """Upsert (plan, result) pairs in one transaction: a failure leaves the previous index intact.

    A pair's row is keyed by (cell_id, host_id): a result's own host, or `host` (a HostCaps.host_block(),
    normally this host's) for a planned or infeasible cell that has no result yet. `wait`: seconds to wait
    for another process's connection to go away (None: WRITE_WAIT_S) before raising IndexUnavailable."""
    with _transaction(db_path, wait) as con:
        _upsert(con, items, host)


def _upsert(con, items: list[tuple[dict, dict | None]], host: dict | None) -> set[tuple[str, str]]:
    """The rows of `items` (later items win); returns the (cell_id, host_id) keys written."""
    hosts: dict[str, tuple[dict, list[str]]] = {}  # host_id -> (latest block, finish times): one upsert each
    keys = set()
    for plan, doc in items:
        cid = plan["cell_id"]
        if doc is not None:
            doc = upgrade(doc) if doc.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION else doc
            h = normalized_host(doc)
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
        _insert(con, "cells", CELL_COLS, [cell_row(plan, doc, h)])
        times = hosts.setdefault(hid, (h, []))[1]
        hosts[hid] = (h, times)
        if (doc or {}).get("finished_at"):
            times.append(doc["finished_at"])
        if doc:
            _insert(con, "perf", PERF_COLS, perf_rows(cid, hid, doc))
            _insert(con, "quality", QUALITY_COLS, quality_rows(cid, hid, doc))
            _insert(con, "flips", FLIP_COLS, flip_rows(cid, hid, doc))
            _insert(con, "items", ITEM_COLS, item_rows(cid, hid, doc))
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
        cols = _columns(con, "cells")
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
        hcols = [c for c in _columns(con, "hosts") if c in HOST_COLS]
        if "host_id" in hcols:
            for r in con.execute(f"SELECT {', '.join(hcols)} FROM hosts").fetchall():
                hosts[r[hcols.index("host_id")]] = dict(zip(hcols, r))
    return rows, hosts


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def rebuild(db_path: Path, docs: list[dict], scans: list[dict] | None = None) -> Rebuilt:
    """Recreate the index from result JSONs (the plan of each cell is stored inside its result) and
    sensitivity scans, keeping the old index's planned and infeasible rows (cells not yet run, and cells
    this host cannot run, with the reason) that no result replaces.

    The new index is built in a uniquely named file beside the old one and renamed over it: a crash
    mid-rebuild leaves the old index as it was (and a temporary file the next rebuild removes). The
    caller holds the results writer lock (harness/runner.py writer_lock): leftover temporary files are
    then a dead rebuild's. An old index another process holds open for writing is refused, not replaced:
    that process would go on writing (its WAL by name) into a file that is no longer the index."""
    db_path = Path(db_path)
    for stale in db_path.parent.glob(f".{db_path.name}.*.tmp*"):  # see unique_tmp; `.wal` siblings too
        stale.unlink(missing_ok=True)
    rows, old_hosts, note = [], {}, None
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
            have = _upsert(con, [(d["plan"], d) for d in docs], None)
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
    return Rebuilt(len(docs), len(carried), note)


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
