"""The mixed-precision helper end to end on a tiny random Llama: per-layer scan as a stage subprocess,
stored as JSON and in DuckDB, with an `ignore:` suggestion naming the most sensitive layers."""

import json
import os

import duckdb
import pytest

from harness.plan.sensitivity import ignore_for, scan
from harness.settings import load_settings
from harness.spec import parse_matrix
from tests.fakes.tiny_llama import make_tiny_llama

pytestmark = pytest.mark.slow


def test_ignore_pattern():
    assert ignore_for([3, 0], ["lm_head"]) == ["lm_head", "re:model\\.layers\\.(0|3)\\."]
    assert ignore_for([], ["lm_head"]) == ["lm_head"]


def test_scan_ranks_layers_and_is_stored(base_matrix, tmp_path):
    torch = pytest.importorskip("torch")
    d = make_tiny_llama(tmp_path / "tiny", layers=3, peaked=True)  # peaked logits, so rounding a layer shows
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(d)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(40)  # one layer far more exposed to rounding
    model.to(torch.bfloat16).save_pretrained(d)
    base_matrix["models"] = [{"name": "tiny", "source": {"kind": "local", "path": str(d)}}]
    base_matrix["methods"] = {"rtn": {"kind": "rtn", "group_size": 32, "precisions": ["int4"]}}
    base_matrix["axes"] = {"precision": ["bf16", "int4"], "method": ["none", "rtn"], "distill": ["none"]}
    settings = load_settings({**os.environ, "DQBENCH_RESULTS": str(tmp_path / "results")})
    doc = scan(parse_matrix(base_matrix), "rtn", settings, windows=2, tokens=32, top=1)
    assert [r["layer"] for r in doc["layers"]] == [0, 1, 2] and sorted(doc["ranked"]) == [0, 1, 2]
    assert all(r["kld_mean"] >= 0 and 0 <= r["top1_agreement"] <= 1 for r in doc["layers"])
    assert doc["all_layers"]["kld_mean"] >= max(r["kld_mean"] for r in doc["layers"]) * 0.5
    assert doc["suggested"]["ignore"] == ["lm_head", f"re:model\\.layers\\.({doc['ranked'][0]})\\."]
    assert (doc["scheme"]["bits"], doc["scheme"]["group_size"], doc["scheme"]["symmetric"]) == (4, 32, True)
    stored = json.loads((tmp_path / "results" / "sensitivity" / f"{doc['scan_id']}.json").read_text())
    assert stored["ranked"] == doc["ranked"]
    con = duckdb.connect(str(settings.db_path), read_only=True)
    rows = con.execute("SELECT layer, rank FROM sensitivity ORDER BY rank").fetchall()
    con.close()
    assert [r[0] for r in rows] == doc["ranked"] and [r[1] for r in rows] == [1, 2, 3]
    again = scan(parse_matrix(base_matrix), "rtn", settings, windows=2, tokens=32, top=1)  # stored: not re-run
    assert again["scan_id"] == doc["scan_id"] and again["wall_s"] == doc["wall_s"]
