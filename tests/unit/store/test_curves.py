"""Curves in the index: per-level rows (window, per-user tok/s, the SLO judged against), the `curves` view and
its query on an index written by an older dqbench, the sweep's columns on `cells`, and the headline's
steady-window rule (harness/result_facts.level_window)."""

import copy
import json

import duckdb
import pytest

from harness.result import CellResult, Level
from harness.result_facts import MIN_STEADY_REQUESTS, headline, level_window, user_tok_s
from harness.store import db
from harness.store.schema import CURVE_FIGURES, curves_select
from tests.conftest import REPO

V3 = json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text())
SLO = {"ttft_ms": 500.0, "tpot_ms": 50.0, "e2e_ms": None, "percentile": 90.0}


def pct(p50: float, p99: float) -> dict:
    return {"mean": p50, "p50": p50, "p90": (p50 + p99) / 2, "p99": p99}


def level(profile: str, lvl: float, req_s: float, tok_s: float, ttft: float, tpot: float, steady_n: int) -> dict:
    """A level whose steady window holds `steady_n` requests, with figures distinct from the whole level's
    (x1.1 throughput, x0.9 latency), so a test can tell which window a figure came from."""
    return {
        "profile": profile,
        "level": lvl,
        "requests": 40,
        "completed": 40,
        "failed": 0,
        "duration_s": 40 / req_s,
        "req_s": req_s,
        "output_tok_s": tok_s,
        "ttft_ms": pct(ttft, 2 * ttft),
        "tpot_ms": pct(tpot, 1.5 * tpot),
        "e2e_ms": pct(ttft + 63 * tpot, 2 * (ttft + 63 * tpot)),
        "goodput_req_s": req_s * 0.9,
        "slo_attainment": 0.9,
        "slo_met": True,
        "noisy": profile == "concurrency" and lvl == 16,
        "steady": {
            "trim": 0.1,
            "duration_s": 30.0,
            "requests": steady_n,
            "completed": steady_n,
            "req_s": req_s * 1.1,
            "output_tok_s": tok_s * 1.1,
            "ttft_ms": pct(ttft * 0.9, 2 * ttft * 0.9),
            "tpot_ms": pct(tpot * 0.9, 1.5 * tpot * 0.9),
            "e2e_ms": pct((ttft + 63 * tpot) * 0.9, 2 * (ttft + 63 * tpot) * 0.9),
            "goodput_req_s": req_s,
        },
    }


def result(cell_id: str = "c0ffee000001", steady_n: int = 30, sweep: dict | None = None) -> dict:
    r = copy.deepcopy(V3)
    r["cell_id"] = r["plan"]["cell_id"] = cell_id
    r["plan"]["load"]["slo"] = SLO
    r["perf"] = {
        "levels": [
            level("synchronous", 1, 0.5, 32.0, 100.0, 20.0, steady_n),
            level("concurrency", 4, 1.6, 100.0, 200.0, 25.0, steady_n),
            level("concurrency", 16, 3.0, 190.0, 900.0, 40.0, 3),  # a thin steady window: the whole level
        ]
    }
    if sweep is not None:
        r["perf"]["sweep"] = sweep
    return r


def test_headline_prefers_a_steady_window_with_enough_requests_and_says_so():
    levels = [Level.model_validate(lv) for lv in result()["perf"]["levels"]]
    h = headline(levels)
    assert h["ttft_ms_p50"] == pytest.approx(90.0)  # synchronous level's steady window (30 requests)
    assert h["output_tok_s"] == 190.0  # c16's steady window held 3 requests: the whole level
    assert h["headline_window"] == "latency: steady; throughput: level"
    assert level_window(levels[2]) == (
        False,
        f"whole level (its steady window held 3 requests, fewer than {MIN_STEADY_REQUESTS})",
    )
    thin = [Level.model_validate(lv) for lv in result(steady_n=MIN_STEADY_REQUESTS - 1)["perf"]["levels"]]
    assert headline(thin)["ttft_ms_p50"] == 100.0 and headline(thin)["headline_window"] == "level"
    fat = [Level.model_validate(lv) for lv in result(steady_n=MIN_STEADY_REQUESTS)["perf"]["levels"][:2]]
    assert headline(fat)["headline_window"] == "steady" and headline(fat)["output_tok_s"] == pytest.approx(110.0)
    assert user_tok_s(20.0) == 50.0 and user_tok_s(None) is None and user_tok_s(0.0) is None


def test_perf_rows_and_the_curves_view(tmp_path):
    path = tmp_path / "x.duckdb"
    sweep = {
        "sync_req_s": 0.5,
        "max_req_s": 3.0,
        "rates": [1.0, 1.5, 2.5],
        "saturation_req_s": 2.5,
        "saturation_reason": "achieved rate below 90% of the target",
        "max_rate_at_slo_req_s": 1.5,
        "stopped_early": True,
    }
    r = result(sweep=sweep)
    db.ingest(path, [(r["plan"], r)])
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute(
        "SELECT level, window_kind, user_tok_s, slo_ttft_ms, slo_tpot_ms, slo_e2e_ms, slo_percentile, "
        "steady_requests, steady_ttft_ms_p99 FROM perf ORDER BY level"
    ).fetchall()
    assert rows[0][:2] == (1.0, "steady") and rows[2][:2] == (16.0, "level")
    assert rows[0][2] == pytest.approx(1000 / 18.0)  # steady TPOT p50 = 0.9 x 20 ms
    assert rows[2][2] == pytest.approx(1000 / 40.0)  # the whole level's
    assert rows[0][3:7] == (500.0, 50.0, None, 90.0)
    assert rows[0][7] == 30 and rows[0][8] == pytest.approx(180.0)
    curves = con.execute("SELECT * FROM curves ORDER BY level").df()
    assert list(curves["model"]) == [V3["plan"]["model"]["name"]] * 3
    assert curves["system_tok_s"].tolist() == pytest.approx([32.0 * 1.1, 110.0, 190.0])
    assert curves["ttft_ms_p99"].tolist() == pytest.approx([180.0, 360.0, 1800.0])
    assert curves["noisy"].tolist() == [False, False, True]
    assert set(CURVE_FIGURES) <= set(curves.columns)
    cell = con.execute(
        "SELECT sweep_sync_req_s, sweep_max_req_s, sweep_rates, sweep_saturation_req_s, "
        "sweep_max_rate_at_slo_req_s, sweep_stopped_early, headline_window FROM cells"
    ).fetchone()
    assert cell == (0.5, 3.0, "1,1.5,2.5", 2.5, 1.5, True, "latency: steady; throughput: level")
    con.close()
    # rebuild from the JSON alone gives the same curves
    before = curves
    db.rebuild(path, [CellResult.model_validate(r)])
    with db.reading(path) as con:
        assert con.execute("SELECT * FROM curves ORDER BY level").df().equals(before)


def test_a_result_without_slo_steady_or_sweep_has_null_figures_not_errors(tmp_path):
    path = tmp_path / "x.duckdb"
    db.ingest(path, [(V3["plan"], V3)])
    with db.reading(path) as con:
        c = con.execute("SELECT window_kind, slo_ttft_ms, user_tok_s, tpot_ms_p50 FROM curves").fetchall()
        assert {w for w, *_ in c} == {"level"} and {s for _, s, *_ in c} == {None}
        assert all(u == pytest.approx(1000 / t) for _, _, u, t in c if t)
        assert con.execute("SELECT DISTINCT sweep_rates FROM cells").fetchall() == [(None,)]


def test_the_curves_query_reads_an_index_written_before_curves(tmp_path):
    """A reader opens the index read-only, so it cannot add columns: the query reads what is there."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE cells (cell_id VARCHAR, host_id VARCHAR, model VARCHAR, status VARCHAR)")
    con.execute(
        "CREATE TABLE perf (cell_id VARCHAR, host_id VARCHAR, profile VARCHAR, level DOUBLE, "
        "output_tok_s DOUBLE, ttft_ms_p50 DOUBLE)"
    )
    con.execute("INSERT INTO cells VALUES ('a', 'h', 'm', 'done')")
    con.execute("INSERT INTO perf VALUES ('a', 'h', 'concurrency', 4, 100.0, 250.0)")
    con.close()
    with db.reading(path) as con:
        have = {t: {r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()} for t in ("perf", "cells")}
        row = con.execute(curves_select(have["perf"], have["cells"])).df().iloc[0]
    assert row["window_kind"] == "level" and row["system_tok_s"] == 100.0 and row["ttft_ms_p50"] == 250.0
    assert row["user_tok_s"] is None or row["user_tok_s"] != row["user_tok_s"]  # NULL
    db.ingest(path, [(V3["plan"], V3)])  # the writer brings it up to date, view included
    with db.reading(path) as con:
        assert con.execute("SELECT count(*) FROM curves").fetchone()[0] == 1 + len(V3["perf"]["levels"])
