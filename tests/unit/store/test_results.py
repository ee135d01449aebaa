import json
import os

import pytest

from harness.proc import write_json_atomic
from harness.store.results import SCHEMA_VERSION, ResultStore, flat_metrics, upgrade


def doc(cell_id="abc123def456", status="done", **kw):
    return {"cell_id": cell_id, "status": status, "plan": {"cell_id": cell_id}, **kw}


def test_write_read_roundtrip(tmp_path):
    s = ResultStore(tmp_path)
    p = s.write(doc(perf={"headline": {"output_tok_s": 10.0}}))
    assert p == tmp_path / "cells" / "abc123def456.json"
    got = s.read("abc123def456")
    assert got["schema_version"] == SCHEMA_VERSION and got["status"] == "done"
    assert s.status("missing") is None and len(s.all()) == 1


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    s = ResultStore(tmp_path)
    s.write(doc())
    with pytest.raises(TypeError):
        write_json_atomic(s.path("abc123def456"), {"status": "done", "obj": _Unserialisable()})
    assert s.read("abc123def456")["status"] == "done"
    assert [p.name for p in (tmp_path / "cells").iterdir()] == ["abc123def456.json"]  # no temp left


class _Unserialisable:
    def __repr__(self):
        raise TypeError("cannot serialise")

    __str__ = __repr__


def test_corrupt_or_future_file_reads_as_not_done(tmp_path):
    s = ResultStore(tmp_path)
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "aaaaaaaaaaaa.json").write_text('{"cell_id": "aaaaaaaaaaaa", "status": "do')
    (tmp_path / "cells" / "bbbbbbbbbbbb.json").write_text(json.dumps({"schema_version": 99, "status": "done"}))
    assert s.status("aaaaaaaaaaaa") is None and s.status("bbbbbbbbbbbb") is None
    with pytest.raises(ValueError, match="schema_version 99"):
        upgrade({"schema_version": 99})


def test_flat_metrics():
    d = doc(perf={"headline": {"ttft_ms_p50": 190.0, "output_tok_s": 140.0}},
            artefact={"size_bytes": 2**30, "bits_per_weight": 16.0}, memory={"peak_gib": 3.2},
            quality={"tasks": {"dq_arc_easy": {"metrics": {"acc": {"value": 0.5, "stderr": 0.1}}}}})
    m = flat_metrics(d)
    assert m["ttft_ms_p50"] == 190.0 and m["output_tok_s"] == 140.0 and m["size_gib"] == 1.0
    assert m["peak_mem_gib"] == 3.2 and m["quality"] == {"dq_arc_easy": {"acc": 0.5}}
    assert flat_metrics(None) == {}


def test_fixture_of_schema_v1_still_loads():
    from tests.conftest import REPO

    fixture = REPO / "tests" / "fixtures" / "result-v1.json"
    d = upgrade(json.loads(fixture.read_text()))
    m = flat_metrics(d)
    assert m["output_tok_s"] > 0 and m["quality"]


def test_no_temp_files_after_many_writes(tmp_path):
    s = ResultStore(tmp_path)
    for i in range(20):
        s.write(doc(status="failed" if i % 2 else "done"))
    assert os.listdir(tmp_path / "cells") == ["abc123def456.json"]
