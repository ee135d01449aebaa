import json
import os

import pytest

from harness.proc import write_json_atomic
from harness.store.hosts import UNKNOWN_HOST_ID, UNKNOWN_LABEL, UNPROBED_HOST_ID
from harness.store.results import SCHEMA_VERSION, ResultStore, flat_metrics, upgrade
from tests.conftest import REPO

HOST = {
    "host_id": "aaaa000001",
    "label": "CPU A · avx2 · 2 cores",
    "fingerprint": {"isa": "avx2"},
    "source": "probe",
    "reference_dtype": "fp32",
}
OTHER = {
    "host_id": "bbbb000002",
    "label": "CPU B · avx512 · 8 cores",
    "fingerprint": {"isa": "avx512"},
    "source": "probe",
    "reference_dtype": "bf16",
}


def doc(cell_id="abc123def456", status="done", host=HOST, **kw):
    return {"cell_id": cell_id, "status": status, "plan": {"cell_id": cell_id}, "host": host, **kw}


def test_write_read_roundtrip(tmp_path):
    s = ResultStore(tmp_path)
    p = s.write(doc(perf={"headline": {"output_tok_s": 10.0}}))
    assert p == tmp_path / "cells" / "abc123def456@aaaa000001.json"
    got = s.read("abc123def456", "aaaa000001")
    assert got["schema_version"] == SCHEMA_VERSION == 2 and got["status"] == "done"
    assert got["host"] == HOST
    assert s.status("missing", "aaaa000001") is None and len(s.all()) == 1


def test_results_are_per_host(tmp_path):
    """The same cell id on two hosts: two files, two results; one host's done says nothing about the other's."""
    s = ResultStore(tmp_path)
    s.write(doc(status="done", perf={"headline": {"output_tok_s": 10.0}}))
    s.write(doc(status="failed", host=OTHER, reason="serve: boom"))
    assert s.status("abc123def456", HOST["host_id"]) == "done"
    assert s.status("abc123def456", OTHER["host_id"]) == "failed"
    assert s.status("abc123def456", "cccc000003") is None
    assert sorted(p.name for p in (tmp_path / "cells").glob("*.json")) == [
        "abc123def456@aaaa000001.json",
        "abc123def456@bbbb000002.json",
    ]
    assert {d["host"]["host_id"] for d in s.all()} == {HOST["host_id"], OTHER["host_id"]}
    assert set(s.hosts_of("abc123def456")) == {HOST["host_id"], OTHER["host_id"]}


def test_failed_attempt_never_overwrites_a_done_result(tmp_path):
    s = ResultStore(tmp_path)
    done = s.write(doc(status="done", finished_at="2025-01-01T00:00:00+00:00"))
    p = s.write(doc(status="failed", reason="evaluate: boom", finished_at="2025-01-02T00:00:00+00:00"))
    assert p.parent == tmp_path / "attempts" and p.name.startswith("abc123def456@aaaa000001-")
    assert p.name.endswith("Z.json")
    assert s.status("abc123def456", "aaaa000001") == "done"  # the store still says done
    assert json.loads(done.read_text())["finished_at"] == "2025-01-01T00:00:00+00:00"
    attempt = json.loads(p.read_text())
    assert attempt["status"] == "failed" and attempt["kept_result"] == str(done)
    p2 = s.write(doc(status="failed", reason="again"))  # a second failure in the same second: its own file
    assert p2 != p and s.attempts("abc123def456", "aaaa000001") == sorted([p, p2])
    assert len(s.all()) == 1  # attempts are not results
    # a later success replaces the done result as usual
    s.write(doc(status="done", finished_at="2025-01-03T00:00:00+00:00"))
    assert s.read("abc123def456", "aaaa000001")["finished_at"] == "2025-01-03T00:00:00+00:00"


def test_failed_attempt_over_failed_or_absent_replaces_it(tmp_path):
    s = ResultStore(tmp_path)
    assert s.write(doc(status="failed", reason="first")) == s.path("abc123def456", "aaaa000001")
    assert s.write(doc(status="failed", reason="second")) == s.path("abc123def456", "aaaa000001")
    assert s.read("abc123def456", "aaaa000001")["reason"] == "second"
    assert not (tmp_path / "attempts").exists()
    # another host's done result does not protect this host's file, and is not touched
    s.write(doc(status="done", host=OTHER))
    s.write(doc(status="failed", reason="third"))
    assert s.read("abc123def456", "aaaa000001")["reason"] == "third"
    assert s.status("abc123def456", OTHER["host_id"]) == "done"


def test_a_result_without_a_probed_host_is_stored_as_unprobed(tmp_path):
    """harness/cell.py records host_id None with the probe's error when the probe fails."""
    s = ResultStore(tmp_path)
    p = s.write(doc(host={"host_id": None, "label": None, "error": "probe failed: no vllm"}))
    assert p.name == f"abc123def456@{UNPROBED_HOST_ID}.json"
    h = s.read("abc123def456", UNPROBED_HOST_ID)["host"]
    assert h["host_id"] == UNPROBED_HOST_ID and h["error"] == "probe failed: no vllm" and h["label"]


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    s = ResultStore(tmp_path)
    s.write(doc())
    with pytest.raises(TypeError):
        write_json_atomic(s.path("abc123def456", "aaaa000001"), {"status": "done", "obj": _Unserialisable()})
    assert s.read("abc123def456", "aaaa000001")["status"] == "done"
    assert [p.name for p in (tmp_path / "cells").iterdir()] == ["abc123def456@aaaa000001.json"]  # no temp left


class _Unserialisable:
    def __repr__(self):
        raise TypeError("cannot serialise")

    __str__ = __repr__


def test_corrupt_or_future_file_reads_as_not_done(tmp_path):
    s = ResultStore(tmp_path)
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "aaaaaaaaaaaa@h1.json").write_text('{"cell_id": "aaaaaaaaaaaa", "status": "do')
    (tmp_path / "cells" / "bbbbbbbbbbbb@h1.json").write_text(json.dumps({"schema_version": 99, "status": "done"}))
    assert s.status("aaaaaaaaaaaa", "h1") is None and s.status("bbbbbbbbbbbb", "h1") is None
    with pytest.raises(ValueError, match="schema_version 99"):
        upgrade({"schema_version": 99})
    assert s.all() == []


def test_flat_metrics():
    d = doc(
        perf={"headline": {"ttft_ms_p50": 190.0, "output_tok_s": 140.0}},
        artefact={"size_bytes": 2**30, "bits_per_weight": 16.0},
        memory={"peak_gib": 3.2, "gpu_peak_gib": 7.5},
        quality={"tasks": {"dq_arc_easy": {"metrics": {"acc": {"value": 0.5, "stderr": 0.1}}}}},
    )
    m = flat_metrics(d)
    assert m["ttft_ms_p50"] == 190.0 and m["output_tok_s"] == 140.0 and m["size_gib"] == 1.0
    assert m["peak_mem_gib"] == 3.2 and m["gpu_peak_gib"] == 7.5 and m["quality"] == {"dq_arc_easy": {"acc": 0.5}}
    assert flat_metrics(None) == {}


def test_fixture_of_schema_v1_still_loads():
    fixture = REPO / "tests" / "fixtures" / "result-v1.json"
    raw = json.loads(fixture.read_text())
    assert raw["schema_version"] == 1 and "host" not in raw
    d = upgrade(raw)
    assert d["schema_version"] == SCHEMA_VERSION and d["upgraded_from"] == 1
    assert d["host"]["host_id"] == UNKNOWN_HOST_ID and d["host"]["label"] == UNKNOWN_LABEL
    m = flat_metrics(d)
    assert m["output_tok_s"] > 0 and m["quality"] and m["gpu_peak_gib"] is None


def test_v1_file_in_the_old_place_reads_as_the_unknown_host(tmp_path):
    s = ResultStore(tmp_path)
    raw = json.loads((REPO / "tests" / "fixtures" / "result-v1.json").read_text())
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / f"{raw['cell_id']}.json").write_text(json.dumps(raw))
    assert s.status(raw["cell_id"], UNKNOWN_HOST_ID) == "done"
    assert s.status(raw["cell_id"], HOST["host_id"]) is None  # not this host's: it runs again here
    assert [d["host"]["host_id"] for d in s.all()] == [UNKNOWN_HOST_ID]
    assert set(s.hosts_of(raw["cell_id"])) == {UNKNOWN_HOST_ID}


def test_fixture_of_schema_v2_loads():
    d = upgrade(json.loads((REPO / "tests" / "fixtures" / "result-v2.json").read_text()))
    assert d["schema_version"] == 2 and d["host"]["host_id"] == "ab04ec95c6"
    assert d["host"]["label"] == "AMD EPYC 7B13 · avx2 · 2 cores" and d["host"]["fingerprint"]["isa"] == "avx2"
    assert flat_metrics(d)["output_tok_s"] > 0


def test_no_temp_files_after_many_writes(tmp_path):
    s = ResultStore(tmp_path)
    for i in range(20):
        s.write(doc(status="failed" if i % 2 else "done"))
    assert os.listdir(tmp_path / "cells") == ["abc123def456@aaaa000001.json"]


def test_a_failure_never_replaces_a_file_this_dqbench_cannot_read(tmp_path):
    from harness.store.results import ResultStore

    store = ResultStore(tmp_path)
    p = store.path("c1", "h1")
    p.parent.mkdir(parents=True)
    p.write_text('{"schema_version": 99, "status": "done"}')  # written by a newer dqbench
    where = store.write({"cell_id": "c1", "status": "failed", "host": {"host_id": "h1", "label": "h"}})
    assert where.parent.name == "attempts" and '"schema_version": 99' in p.read_text()
