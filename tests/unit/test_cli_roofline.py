"""The roofline and the predictions where the harness shows them: `harness doctor --json` (the host's figures),
the DuckDB index (cells and perf columns), `harness status` (% of limit and regime) and `harness plan` (a
prediction per cell before anything runs)."""

import json
import os
import subprocess
import sys

import duckdb
import pytest

from harness.cli.status import roofline_cell
from harness.predict.roofline import roofline_of
from harness.store.db import ingest
from harness.store.rows import roofline_figures
from tests.conftest import MATRICES, REPO
from tests.unit.predict.conftest import FIGS


def harness(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=REPO, timeout=120, env=env
    )


def test_doctor_json_has_bandwidth_and_throughput():
    r = harness("doctor", "--json", env=dict(os.environ, DQBENCH_HOST_CAPS="cpu-avx512"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    figs = doc["roofline_figures"]
    assert figs["bandwidth_gb_s"] > 0 and {"fp32", "bf16", "int8"} <= set(figs["tflops"])
    r = harness("doctor", env=dict(os.environ, DQBENCH_HOST_CAPS="cuda-h100"))
    assert "roofline bandwidth 3350.0 GB/s" in r.stdout and "datasheet" in r.stdout


@pytest.fixture
def v3_roof():
    from harness.result import CellResult

    doc = json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text())
    r = CellResult.model_validate(doc)
    return r.model_copy(update={"roofline": roofline_of(r, FIGS)})


def test_the_index_holds_the_roofline_per_cell_and_per_level(tmp_path, v3_roof):
    db = tmp_path / "r.duckdb"
    ingest(db, [(v3_roof.plan, v3_roof)])
    con = duckdb.connect(str(db), read_only=True)
    try:
        c = con.execute(
            "SELECT roofline_tok_s_c1, roofline_pct_c1, regime_c1, regime_top, roofline_pct_prefill FROM cells"
        ).fetchone()
        levels = con.execute("SELECT profile, level, roofline_tok_s, regime FROM perf ORDER BY level").fetchall()
    finally:
        con.close()
    rf = v3_roof.roofline
    assert c[0] == rf.levels[0].limit_tok_s and c[1] == rf.levels[0].pct_of_limit and c[2] == rf.levels[0].regime
    assert c[3] == rf.levels[-1].regime and c[4] == rf.prefill_pct_of_limit
    by = {(p, lv): (t, g) for p, lv, t, g in levels}
    assert by[("concurrency", 16.0)][0] == rf.levels[-1].limit_tok_s
    assert by[("poisson", 2.0)] == (None, None)  # a rate level has no concurrency: no decode limit


def test_status_shows_percent_of_limit_and_regime(v3_roof):
    text = roofline_cell(roofline_figures(v3_roof))
    assert text.startswith("c1 ") and "top " in text and "pf " in text and ("mem" in text or "cmp" in text)
    assert (
        roofline_cell(None) == ""
        and roofline_figures(v3_roof.model_copy(update={"roofline": None}))["regime_c1"] is None
    )


def test_plan_shows_a_prediction_per_cell_for_another_host():
    r = harness("plan", str(MATRICES / "llama8b.yaml"), "--host", "cuda-h100", "--json")
    assert r.returncode == 0, r.stderr
    cells = [c for c in json.loads(r.stdout)["cells"] if c["status"] != "infeasible"]
    assert cells and all(c["prediction"]["decode_tok_s"]["label"] == "predicted" for c in cells)
    r = harness("plan", str(MATRICES / "llama8b.yaml"), "--host", "cuda-h100")
    assert "predicted before running" in r.stdout
