import json

import duckdb
import pytest

from harness.store import db
from tests.conftest import REPO

FIXTURE = json.loads((REPO / "tests" / "fixtures" / "result-v1.json").read_text())


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
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    con.close()


def test_ingest_is_an_upsert(tmp_path):
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(FIXTURE["plan"], None)])  # planned first
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*), min(status) FROM cells").fetchone() == (1, "done")
    assert con.execute("SELECT count(*) FROM perf").fetchone()[0] == len(FIXTURE["perf"]["levels"])
    con.close()


def test_failed_ingest_leaves_previous_index_intact(tmp_path):
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(FIXTURE["plan"], FIXTURE)])
    broken = dict(FIXTURE, perf={"levels": [{"profile": "synchronous", "level": "not-a-number"}]})
    with pytest.raises(Exception):
        db.ingest(path, [(FIXTURE["plan"], broken)])
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*) FROM perf").fetchone()[0] == len(FIXTURE["perf"]["levels"])
    con.close()


def test_rebuild_from_json(tmp_path):
    path = tmp_path / "x.duckdb"
    other = dict(FIXTURE, cell_id="ffffffffffff", plan=dict(FIXTURE["plan"], cell_id="ffffffffffff"), status="failed",
                 reason="serve: boom")
    assert db.rebuild(path, [FIXTURE, other]) == 2
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
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect(r'{path}'); "
                               "print('locked', flush=True); time.sleep(1.5); c.close()"], stdout=subprocess.PIPE,
                              text=True)
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
    samples.write_text("".join(json.dumps({"doc_id": i, "acc": float(i % 2), "acc_norm": 1.0}) + "\n"
                               for i in range(4)))
    doc = copy.deepcopy(FIXTURE)
    doc["quality"]["tasks"].setdefault("dq_arc_easy", {"metrics": {}})["samples_path"] = str(samples)
    doc["quality"]["scored_by"] = "lm-eval local-completions"
    doc["shift"] = {"reference": "parent000000", "metrics": {"kld_mean": 0.01, "kld_p99": 0.2,
                                                             "top1_agreement": 0.95, "dp_rms": 0.02,
                                                             "ppl_ratio": 1.03},
                    "flips": {"tasks": {"dq_arc_easy": {"acc": {"n": 4, "ref_correct_cell_wrong": 1,
                                                                "ref_wrong_cell_correct": 0, "flip_rate": 0.25,
                                                                "drop_abs": 0.25, "drop_rel": 0.5,
                                                                "drop_ci95": [0.0, 0.75], "ci": "paired"}}},
                              "aggregate": {"drop_abs": 0.25, "drop_ci95": [0.0, 0.75]}}}
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(doc["plan"], doc)])
    con = db.connect_read_only(path)
    assert con.execute("SELECT kld_mean, top1_agreement, paired_drop, paired_drop_ci_hi, scored_by FROM cells"
                       ).fetchone() == (0.01, 0.95, 0.25, 0.75, "lm-eval local-completions")
    assert con.execute("SELECT ref_id, task, metric, ref_correct_cell_wrong, drop_ci_lo FROM flips").fetchall() == [
        ("parent000000", "dq_arc_easy", "acc", 1, 0.0)]
    assert con.execute("SELECT metric, sum(value), count(*) FROM items WHERE task = 'dq_arc_easy' "
                       "GROUP BY metric ORDER BY metric"
                       ).fetchall() == [("acc", 2.0, 4), ("acc_norm", 4.0, 4)]
    con.close()


def test_student_lineage_is_queryable(tmp_path):
    """teacher -> student -> quantized student, with what training did, in plain SQL."""
    path = tmp_path / "x.duckdb"
    t = FIXTURE
    rec = {"tokens_seen": 81920, "train_s": 321.0, "student_params": 81_000_000,
           "loss_curve": [{"step": 1, "loss": 9.0}, {"step": 80, "loss": 4.25}], "heldout_after": {"ce": 4.5}}
    dist = {"kind": "logit_kd", "student_key": "k1", "teacher_id": t["cell_id"], "record": rec,
            "cost": {"reference": {"gpu_hours": 23.9, "usd": 59.7}}}
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
    assert con.execute("SELECT teacher_id, distill_kind FROM cells WHERE cell_id = ?", [t["cell_id"]]).fetchone() == \
        (None, None)
    con.close()
