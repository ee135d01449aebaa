"""A spec-decoded cell, its energy readings and its price in the index (harness/store/rows.py, schema.py): the
draft and its target known from the plan, acceptance, speed-up, equal output and energy from the result; a
result without them reads as before (NULLs)."""

import copy
import json

import duckdb

from harness.store import db
from tests.conftest import REPO

V2 = json.loads((REPO / "tests" / "fixtures" / "result-v2.json").read_text())


def _spec_result():
    doc = copy.deepcopy(V2)
    doc["cell_id"] = "spec00000001"
    doc["plan"] = {
        **doc["plan"],
        "cell_id": "spec00000001",
        "price_per_hour": 0.5,
        "draft": {"name": "kd-draft", "target_id": V2["cell_id"], "tokens": 4},
    }
    for i, lv in enumerate(doc["perf"]["levels"]):
        lv["speculative"] = {
            "drafts": 10,
            "draft_tokens": 40,
            "accepted_tokens": 12,
            "acceptance_rate": 0.3,
            "mean_accepted_len": 2.2,
            "target_output_tok_s": 10.0,
            "speedup": 1.1 + i,
        }
        lv["energy"] = {
            "counter": "rapl:package-0",
            "scope": "CPU packages",
            "joules": 50.0,
            "seconds": 5.0,
            "output_tokens": 100,
            "requests": 4,
            "joules_per_token": 0.5,
            "tokens_per_joule": 2.0,
            "joules_per_request": 12.5,
            "watts": 10.0,
        }
    doc["perf"]["energy"] = {"counter": "rapl:package-0", "scope": "CPU packages"}
    doc["speculative"] = {
        "draft": "kd-draft",
        "draft_model": "/w/d.gguf",
        "tokens": 4,
        "target_id": V2["cell_id"],
        "engine": "llamacpp",
        "predicted": {"alpha": 0.4, "gamma": 4, "mean_accepted_len": 1.65},
        "acceptance_rate": 0.3,
        "mean_accepted_len": 2.2,
        "speedup_c1": 1.1,
        "speedup_top": 0.9,
        "equal_output": {"verdict": "equal", "items_compared": 5},
    }
    return doc


def test_spec_energy_and_price_columns(tmp_path):
    path = tmp_path / "x.duckdb"
    spec = _spec_result()
    db.ingest(path, [(V2["plan"], V2), (spec["plan"], spec)])
    con = duckdb.connect(str(path), read_only=True)
    row = con.execute(
        "SELECT draft, draft_target_id, spec_tokens, draft_model, spec_alpha, spec_predicted_len, spec_acceptance, "
        "spec_accepted_len, spec_speedup_c1, spec_equal_output, energy_counter, price_per_hour FROM cells "
        "WHERE cell_id = 'spec00000001'"
    ).fetchone()
    assert row == ("kd-draft", V2["cell_id"], 4, "/w/d.gguf", 0.4, 1.65, 0.3, 2.2, 1.1, "equal", "rapl:package-0", 0.5)
    plain = con.execute(f"SELECT draft, spec_acceptance, energy_counter FROM cells WHERE cell_id = '{V2['cell_id']}'")
    assert plain.fetchone() == (None, None, None)
    levels = con.execute(
        "SELECT spec_acceptance, spec_speedup, j_per_token, tok_per_j, j_per_request FROM perf "
        "WHERE cell_id = 'spec00000001' ORDER BY level"
    ).fetchall()
    assert levels[0] == (0.3, 1.1, 0.5, 2.0, 12.5)
    con.close()
