import json
from pathlib import Path

import duckdb
import pytest

from harness.errors import DQError
from harness.store import db
from tests.conftest import REPO

FIXTURE = json.loads((REPO / "tests" / "fixtures" / "result-v1.json").read_text())
FIXTURE_V2 = json.loads((REPO / "tests" / "fixtures" / "result-v2.json").read_text())
HOST = FIXTURE_V2["host"]
OTHER = {
    "host_id": "bbbb000002",
    "label": "CPU B · avx512 · 8 cores",
    "fingerprint": {"isa": "avx512"},
    "source": "probe",
    "reference_dtype": "bf16",
}


def test_ingest_creates_rows_in_all_tables(tmp_path):
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])
    con = db.connect_read_only(path)
    cell = con.execute("SELECT cell_id, status, output_tok_s, precision FROM cells").fetchall()
    assert cell == [(FIXTURE["cell_id"], "done", FIXTURE["perf"]["headline"]["output_tok_s"], "bf16")]
    n_levels = len(FIXTURE["perf"]["levels"])
    assert con.execute("SELECT count(*) FROM perf").fetchone()[0] == n_levels
    n_metrics = sum(len(t["metrics"]) for t in FIXTURE["quality"]["tasks"].values())
    assert con.execute("SELECT count(*) FROM quality").fetchone()[0] == n_metrics
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"
    # a schema-1 result has no host: its rows say so
    assert con.execute("SELECT DISTINCT host_id, host_label FROM cells").fetchall() == [
        ("unknown", "unknown host (result from before host fingerprints, schema 1)")
    ]
    for t in ("perf", "quality"):
        assert con.execute(f"SELECT DISTINCT host_id FROM {t}").fetchall() == [("unknown",)]
    con.close()


def test_ingest_is_an_upsert(tmp_path):
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(FIXTURE_V2["plan"], None)], host=HOST)  # planned first, for this host
    db.ingest(path, [(FIXTURE_V2["plan"], FIXTURE_V2)])
    db.ingest(path, [(FIXTURE_V2["plan"], FIXTURE_V2)])
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*), min(status), min(host_id) FROM cells").fetchone() == (
        1,
        "done",
        HOST["host_id"],
    )
    assert con.execute("SELECT count(*) FROM perf").fetchone()[0] == len(FIXTURE["perf"]["levels"])
    con.close()


def test_failed_ingest_leaves_previous_index_intact(tmp_path):
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])
    broken = dict(FIXTURE, perf={"levels": [{"profile": "synchronous", "level": "not-a-number"}]})
    with pytest.raises(DQError):
        db.ingest(path, [(FIXTURE["plan"], broken)])
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*) FROM perf").fetchone()[0] == len(FIXTURE["perf"]["levels"])
    con.close()


def test_rebuild_from_json(tmp_path):
    path = tmp_path / "x.duckdb"
    other = dict(
        FIXTURE,
        cell_id="ffffffffffff",
        plan=dict(FIXTURE["plan"], cell_id="ffffffffffff"),
        status="failed",
        reason="serve: boom",
    )
    assert db.rebuild(path, [FIXTURE, other]).results == 2
    con = duckdb.connect(str(path), read_only=True)
    assert sorted(con.execute("SELECT status FROM cells").fetchall()) == [("done",), ("failed",)]
    con.close()


def test_reader_can_open_between_writes(tmp_path):
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])
    reader = db.connect_read_only(path)
    assert reader.execute("SELECT count(*) FROM cells").fetchone()[0] == 1
    reader.close()
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])  # the writer gets the file back after the reader is gone


def test_older_index_gains_new_columns(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE cells (cell_id VARCHAR PRIMARY KEY, status VARCHAR)")
    con.execute("INSERT INTO cells VALUES ('old000000000', 'done')")
    con.close()
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("SELECT cell_id, status, output_tok_s IS NOT NULL FROM cells ORDER BY cell_id").fetchall()
    assert rows == [(FIXTURE["cell_id"], "done", True), ("old000000000", "done", False)]
    con.close()


def test_reader_waits_for_a_writer_in_another_process_instead_of_failing(tmp_path):
    """What the dashboard does while `harness run` ingests: no lock error reaches the user."""
    import subprocess
    import sys
    import time

    path = tmp_path / "x.duckdb"
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect(r'{path}'); "
            "print('locked', flush=True); time.sleep(1.5); c.close()",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    t = time.monotonic()
    con = db.connect_read_only(path)  # retries while the write lock is held
    assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 1
    con.close()
    holder.wait(timeout=10)
    assert time.monotonic() - t < 10


def test_shift_flips_and_items_are_indexed(tmp_path):
    import copy

    samples = tmp_path / "dq_arc_easy.jsonl"
    samples.write_text(
        "".join(json.dumps({"doc_id": i, "acc": float(i % 2), "acc_norm": 1.0}) + "\n" for i in range(4))
    )
    doc = copy.deepcopy(FIXTURE)
    doc["quality"]["tasks"].setdefault("dq_arc_easy", {"metrics": {}})["samples_path"] = str(samples)
    doc["quality"]["scored_by"] = "lm-eval local-completions"
    doc["shift"] = {
        "reference": "parent000000",
        "metrics": {"kld_mean": 0.01, "kld_p99": 0.2, "top1_agreement": 0.95, "dp_rms": 0.02, "ppl_ratio": 1.03},
        "flips": {
            "tasks": {
                "dq_arc_easy": {
                    "acc": {
                        "n": 4,
                        "ref_correct_cell_wrong": 1,
                        "ref_wrong_cell_correct": 0,
                        "flip_rate": 0.25,
                        "drop_abs": 0.25,
                        "drop_rel": 0.5,
                        "drop_ci95": [0.0, 0.75],
                        "ci": "paired",
                    }
                }
            },
            "aggregate": {"drop_abs": 0.25, "drop_ci95": [0.0, 0.75]},
        },
    }
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(doc["plan"], doc)])
    con = db.connect_read_only(path)
    assert con.execute(
        "SELECT kld_mean, top1_agreement, paired_drop, paired_drop_ci_hi, scored_by FROM cells"
    ).fetchone() == (0.01, 0.95, 0.25, 0.75, "lm-eval local-completions")
    assert con.execute("SELECT ref_id, task, metric, ref_correct_cell_wrong, drop_ci_lo FROM flips").fetchall() == [
        ("parent000000", "dq_arc_easy", "acc", 1, 0.0)
    ]
    assert con.execute(
        "SELECT metric, sum(value), count(*) FROM items WHERE task = 'dq_arc_easy' GROUP BY metric ORDER BY metric"
    ).fetchall() == [("acc", 2.0, 4), ("acc_norm", 4.0, 4)]
    con.close()


def test_student_lineage_is_queryable(tmp_path):
    """teacher -> student -> quantized student, with what training did, in plain SQL."""
    path = tmp_path / "x.duckdb"
    t = FIXTURE
    rec = {
        "tokens_seen": 81920,
        "train_s": 321.0,
        "student_params": 81_000_000,
        "loss_curve": [{"step": 1, "loss": 9.0}, {"step": 80, "loss": 4.25}],
        "heldout_after": {"ce": 4.5},
    }
    dist = {
        "kind": "logit_kd",
        "student_key": "k1",
        "teacher_id": t["cell_id"],
        "record": rec,
        "cost": {"reference": {"gpu_hours": 23.9, "usd": 59.7}},
    }
    s_plan = dict(t["plan"], cell_id="s00000000000", distill="kd", parent_id=t["cell_id"], teacher_id=t["cell_id"])
    s = dict(t, cell_id="s00000000000", plan=s_plan, distill=dist)
    q_plan = dict(s_plan, cell_id="q00000000000", method="w8a8", parent_id="s00000000000")
    q = dict(t, cell_id="q00000000000", plan=q_plan, distill=dict(dist, record=rec))
    db.ingest(path, [(t["plan"], t), (s_plan, s), (q_plan, q)])
    con = db.connect_read_only(path)
    rows = con.execute("""
        SELECT q.cell_id, s.cell_id, s.teacher_id, s.train_tokens, s.train_loss_final, s.heldout_ce, s.ref_gpu_hours
        FROM cells q JOIN cells s ON q.parent_id = s.cell_id WHERE q.method = 'w8a8'""").fetchall()
    assert rows == [("q00000000000", "s00000000000", t["cell_id"], 81920, 4.25, 4.5, 23.9)]
    assert con.execute("SELECT teacher_id, distill_kind FROM cells WHERE cell_id = ?", [t["cell_id"]]).fetchone() == (
        None,
        None,
    )
    con.close()


def test_a_planned_row_needs_a_host(tmp_path):
    with pytest.raises(ValueError, match="pass host="):
        db.ingest(tmp_path / "x.duckdb", [(FIXTURE_V2["plan"], None)])


def test_same_cell_on_two_hosts_is_two_rows_and_joins_stay_per_host(tmp_path):
    path = tmp_path / "x.duckdb"
    # the other host's top concurrency level ran faster: its headline (derived from the levels) says so
    top = max(lv["level"] for lv in FIXTURE_V2["perf"]["levels"] if lv["profile"] == "concurrency")
    levels = [
        dict(lv, output_tok_s=999.0) if (lv["profile"], lv["level"]) == ("concurrency", top) else lv
        for lv in FIXTURE_V2["perf"]["levels"]
    ]
    other = dict(
        FIXTURE_V2,
        host=OTHER,
        finished_at="2030-01-01T00:00:00+00:00",
        perf=dict(FIXTURE_V2["perf"], levels=levels),
    )
    db.ingest(path, [(FIXTURE_V2["plan"], FIXTURE_V2), (other["plan"], other)])
    db.ingest(path, [(FIXTURE_V2["plan"], FIXTURE_V2)])  # re-ingesting one host leaves the other's rows alone
    con = db.connect_read_only(path)
    rows = con.execute("SELECT host_id, host_label, output_tok_s FROM cells ORDER BY host_id").fetchall()
    assert rows == sorted(
        [
            (HOST["host_id"], HOST["label"], FIXTURE_V2["perf"]["headline"]["output_tok_s"]),
            (OTHER["host_id"], OTHER["label"], 999.0),
        ]
    )
    n_levels = len(FIXTURE_V2["perf"]["levels"])
    assert con.execute("SELECT host_id, count(*) FROM perf GROUP BY host_id ORDER BY host_id").fetchall() == sorted(
        [(HOST["host_id"], n_levels), (OTHER["host_id"], n_levels)]
    )
    joined = con.execute("SELECT count(*) FROM cells c JOIN quality q USING (cell_id, host_id)").fetchone()[0]
    assert joined == 2 * sum(len(t["metrics"]) for t in FIXTURE_V2["quality"]["tasks"].values())
    hosts = con.execute(
        "SELECT host_id, label, source, reference_dtype, first_seen, last_seen, fingerprint FROM hosts ORDER BY host_id"
    ).fetchall()
    by = {h[0]: h for h in hosts}
    assert by[HOST["host_id"]][1:6] == (
        HOST["label"],
        "probe",
        "fp32",
        FIXTURE_V2["finished_at"],
        FIXTURE_V2["finished_at"],
    )
    assert json.loads(by[HOST["host_id"]][6]) == HOST["fingerprint"]
    assert by[OTHER["host_id"]][4:6] == ("2030-01-01T00:00:00+00:00", "2030-01-01T00:00:00+00:00")
    con.close()


def test_rebuild_reproduces_the_incremental_index(tmp_path):
    other = dict(FIXTURE_V2, host=OTHER, status="failed", reason="serve: boom", finished_at="2030-01-01T00:00:00+00:00")
    docs = [FIXTURE, FIXTURE_V2, other]
    inc, reb = tmp_path / "inc.duckdb", tmp_path / "reb.duckdb"
    for d in docs:
        db.ingest(inc, [(d["plan"], d)])
    assert db.rebuild(reb, docs).results == 3
    for table, order in (
        ("cells", "cell_id, host_id"),
        ("perf", "host_id, profile, level"),
        ("quality", "host_id, task, metric"),
        ("hosts", "host_id"),
    ):
        a, b = (db.connect_read_only(p) for p in (inc, reb))
        try:
            assert (
                a.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
                == b.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            ), table
        finally:
            a.close()
            b.close()


def test_index_from_before_hosts_is_migrated(tmp_path):
    """An index written by schema-1 dqbench: cells keyed by cell_id alone (PRIMARY KEY), no host_id anywhere.
    Its rows become host 'unknown', and a second host's row of the same cell can then be written."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE cells (cell_id VARCHAR PRIMARY KEY, status VARCHAR, output_tok_s DOUBLE, retired_col VARCHAR)"
    )
    con.execute("INSERT INTO cells VALUES (?, 'done', 1.5, 'kept')", [FIXTURE_V2["cell_id"]])
    con.execute("CREATE TABLE perf (cell_id VARCHAR, profile VARCHAR, level DOUBLE)")
    con.execute("INSERT INTO perf VALUES (?, 'synchronous', 1)", [FIXTURE_V2["cell_id"]])
    con.close()
    db.ingest(path, [(FIXTURE_V2["plan"], FIXTURE_V2)])
    db.ingest(path, [(FIXTURE_V2["plan"], FIXTURE_V2)])  # twice: the migration runs once, upserts stay upserts
    con = db.connect_read_only(path)
    rows = con.execute("SELECT host_id, status, output_tok_s, retired_col FROM cells ORDER BY host_id").fetchall()
    assert rows == [
        (HOST["host_id"], "done", FIXTURE_V2["perf"]["headline"]["output_tok_s"], None),
        ("unknown", "done", 1.5, "kept"),
    ]
    assert con.execute("SELECT count(*) FROM perf WHERE host_id = 'unknown'").fetchone()[0] == 1
    assert (
        con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'cells' AND constraint_type = 'PRIMARY KEY'"
        ).fetchone()[0]
        == 0
    )
    con.close()


# ---- the index's problems are one clear error, never a hang or a DuckDB traceback


def _corrupt(path):
    """Overwrite a data block of a valid index: DuckDB then fails its checksum."""
    raw = bytearray(path.read_bytes())
    raw[5000:9000] = b"\xff" * 4000
    path.write_bytes(bytes(raw))


def test_a_write_connection_in_another_process_is_one_clear_error_after_a_bounded_wait(tmp_path):
    import time

    from tests.fakes.duckdb_holder import held

    path = tmp_path / "x.duckdb"
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])
    with held(path) as pid:
        for attempt in (
            lambda: db.ingest(path, [(FIXTURE["plan"], FIXTURE)], wait=1.0),
            lambda: db.connect_read_only(path, wait=1.0),
        ):
            t = time.monotonic()
            with pytest.raises(db.IndexUnavailable) as e:
                attempt()
            assert 0.9 <= time.monotonic() - t < 5  # waited as told, then gave up
            assert e.value.kind == "locked" and e.value.exit_code == 3
            assert f"the results index {path} is locked by PID {pid}" in str(e.value)
            assert "close that connection" in str(e.value)
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])  # released: writes again


def test_not_a_duckdb_file_and_a_damaged_one_are_named_with_the_fix(tmp_path):
    text = tmp_path / "notes.duckdb"
    text.write_text("not a database\n" * 10)
    assert not db.is_duckdb_file(text) and not db.is_duckdb_file(tmp_path) and not db.is_duckdb_file(tmp_path / "x")
    with pytest.raises(db.IndexUnavailable) as e, db.reading(text):
        pass
    assert e.value.kind == "not_duckdb" and f"{text} is not a DuckDB database" in str(e.value)
    assert "harness db rebuild" in str(e.value)

    damaged = tmp_path / "damaged.duckdb"
    db.ingest(damaged, [(FIXTURE["plan"], FIXTURE)])
    assert db.is_duckdb_file(damaged)
    _corrupt(damaged)
    with pytest.raises(db.IndexUnavailable) as e, db.reading(damaged) as con:
        con.execute("SELECT * FROM cells").fetchall()
    assert e.value.kind == "damaged" and f"the results index {damaged} is damaged" in str(e.value)

    foreign = tmp_path / "foreign.duckdb"
    duckdb.connect(str(foreign)).close()
    with pytest.raises(db.IndexUnavailable) as e, db.reading(foreign) as con:
        con.execute("SELECT * FROM cells").fetchall()
    assert e.value.kind == "not_index" and "not a dqbench results index" in str(e.value)


def _plan(cell_id: str, **extra) -> dict:
    return dict(FIXTURE_V2["plan"], cell_id=cell_id, **extra)


def test_rebuild_keeps_planned_and_infeasible_rows_that_no_result_replaces(tmp_path):
    path = tmp_path / "x.duckdb"
    now_done = FIXTURE_V2  # planned in the old index, has a result now: the result's row wins
    gone = dict(FIXTURE_V2, cell_id="gone00000000", plan=_plan("gone00000000"))  # indexed, its JSON deleted since
    db.ingest(
        path,
        [
            (now_done["plan"], None),
            (_plan("pend00000000"), None),
            (_plan("infe00000000", status="infeasible", reason="no W4A16 kernel on AVX2"), None),
            (gone["plan"], gone),
        ],
        host=HOST,
    )
    r = db.rebuild(path, [now_done])
    assert r == db.Rebuilt(results=1, carried=2, note=None)
    con = db.connect_read_only(path)
    rows = con.execute("SELECT cell_id, host_id, status, reason FROM cells ORDER BY cell_id").fetchall()
    assert rows == sorted(
        [
            (now_done["cell_id"], HOST["host_id"], "done", None),
            ("pend00000000", HOST["host_id"], "planned", None),
            ("infe00000000", HOST["host_id"], "infeasible", "no W4A16 kernel on AVX2"),
        ]
    )
    assert con.execute("SELECT host_id, label FROM hosts").fetchall() == [(HOST["host_id"], HOST["label"])]
    con.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.duckdb"]  # no temporary file left


def test_rebuild_carries_the_host_row_of_a_host_with_only_planned_cells(tmp_path):
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(_plan("pend00000000"), None)], host=OTHER)
    r = db.rebuild(path, [FIXTURE_V2])
    assert r.carried == 1
    con = db.connect_read_only(path)
    assert sorted(con.execute("SELECT host_id FROM hosts").fetchall()) == sorted(
        [(HOST["host_id"],), (OTHER["host_id"],)]
    )
    con.close()


@pytest.mark.parametrize("spoil", ["text", "damaged"])
def test_rebuild_over_an_unreadable_index_says_what_it_could_not_keep(tmp_path, spoil):
    path = tmp_path / "x.duckdb"
    if spoil == "text":
        path.write_text("hello\n")
    else:
        db.ingest(path, [(_plan("pend00000000"), None)], host=HOST)
        _corrupt(path)
    r = db.rebuild(path, [FIXTURE_V2])
    assert r.results == 1 and r.carried == 0
    assert "the old index could not be read" in r.note and str(path) in r.note
    assert "planned and infeasible rows are not kept" in r.note
    con = db.connect_read_only(path)
    assert con.execute("SELECT cell_id, status FROM cells").fetchall() == [(FIXTURE_V2["cell_id"], "done")]
    con.close()


def test_rebuild_refuses_an_index_another_process_holds_and_leaves_it_alone(tmp_path):
    from tests.fakes.duckdb_holder import held

    path = tmp_path / "x.duckdb"
    db.ingest(path, [(_plan("pend00000000"), None)], host=HOST)
    before = path.read_bytes()
    with held(path), pytest.raises(db.IndexUnavailable) as e:
        db.rebuild(path, [FIXTURE_V2])
    assert e.value.kind == "locked" and "run `harness db rebuild` again" in str(e.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.duckdb"]


def test_a_rebuild_that_dies_before_the_swap_leaves_the_old_index(tmp_path, monkeypatch):
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(_plan("pend00000000"), None)], host=HOST)
    stale = tmp_path / ".x.duckdb.999.deadbeef.tmp"  # what a rebuild killed mid-way leaves
    stale.write_bytes(b"half")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(db.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        db.rebuild(path, [FIXTURE_V2])
    monkeypatch.undo()
    con = db.connect_read_only(path)
    assert con.execute("SELECT cell_id, status FROM cells").fetchall() == [("pend00000000", "planned")]
    con.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.duckdb"]  # its own temporary and the stale one


def test_items_come_from_the_result_itself(tmp_path):
    """A schema-3 result carries its per-item scores: the items table needs no file under work/."""
    v3 = json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text())
    assert not any(Path(t["samples_path"]).exists() for t in v3["quality"]["tasks"].values())
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(v3["plan"], v3)])
    con = db.connect_read_only(path)
    got = con.execute("SELECT task, metric, count(*), avg(value) FROM items GROUP BY ALL ORDER BY ALL").fetchall()
    con.close()
    want = sorted(
        (task, m, t["n"], t["metrics"][m]["value"])
        for task, t in v3["quality"]["tasks"].items()
        for m in ("acc", "acc_norm")
        if m in t["metrics"]
    )
    assert [(a, b, c) for a, b, c, _ in got] == [(a, b, c) for a, b, c, _ in want]
    assert [d for *_, d in got] == pytest.approx([d for *_, d in want])
