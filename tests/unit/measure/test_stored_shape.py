"""The stored perf block keeps its shape: the load generator's typed Level and Perf (harness/result.py) dump
as the dicts they replaced did, and results written before a field existed read back as they were written."""

import json

from harness.measure.level import aggregate
from harness.measure.request import RequestRecord
from harness.result import CellResult, Level, Perf
from tests.conftest import REPO

LEVEL_KEYS = [
    "profile", "level", "requests", "completed", "failed", "duration_s", "req_s", "output_tok_s", "input_tok_s",
    "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "errors", "steady",
    "retried", "abandoned", "first_error", "turns", "cached_tokens",
]  # fmt: skip


def _level() -> Level:
    recs = [
        RequestRecord(ok=True, start=float(i), end=i + 0.5, ttft=0.1, itl=[0.2, 0.2], output_tokens=3) for i in range(4)
    ]
    return aggregate("synchronous", 1, recs)


def test_a_measured_level_keeps_every_field_it_always_wrote_zeros_and_nulls_included():
    d = _level().model_dump(mode="json")
    assert list(d) == LEVEL_KEYS  # late fields at their defaults left out, the load generator's kept
    assert (d["retried"], d["abandoned"], d["first_error"], d["turns"], d["cached_tokens"]) == (0, 0, None, None, None)
    again = Level.model_validate(json.loads(json.dumps(d))).model_dump(mode="json")
    assert json.dumps(again) == json.dumps(d)


def test_a_level_written_before_those_fields_reads_back_as_written():
    d = _level().model_dump(mode="json")
    old = {k: v for k, v in d.items() if k not in Level.set_fields and k != "steady"}
    assert Level.model_validate(old).model_dump(mode="json") == old


def test_a_perf_block_without_a_workload_or_sweep_reads_back_as_written():
    doc = json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text())
    perf = CellResult.model_validate(doc).model_dump(mode="json")["perf"]
    assert json.dumps(perf) == json.dumps(doc["perf"])  # key order included
    assert "workload" not in Perf().model_dump(mode="json") and "headline" not in Perf().model_dump(mode="json")
    assert Perf(workload={"kind": "fixed"}, headline={}).model_dump(mode="json")["headline"] == {}
