import json
import os

import pytest

from harness.proc import write_json_atomic
from harness.result import SCHEMA_VERSION, CellResult
from harness.result_facts import figures, flat_metrics, headline
from harness.store.hosts import UNKNOWN_HOST_ID, UNKNOWN_LABEL, UNPROBED_HOST_ID
from harness.store.results import ResultStore, ResultUnreadable, parse, upgrade
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures"
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
LEVEL = {"profile": "synchronous", "level": 1, "requests": 4, "completed": 4, "failed": 0, "output_tok_s": 10.0}


def doc(cell_id="abc123def456", status="done", host=HOST, **kw):
    return {
        "cell_id": cell_id,
        "matrix": "m",
        "label": "x/bf16/none/none",
        "status": status,
        "plan": {"cell_id": cell_id},
        "host": host,
        **kw,
    }


def fixture(version: int) -> dict:
    return json.loads((FIXTURES / f"result-v{version}.json").read_text())


def test_write_read_roundtrip(tmp_path):
    s = ResultStore(tmp_path)
    p = s.write(doc(perf={"levels": [LEVEL]}))
    assert p == tmp_path / "cells" / "abc123def456@aaaa000001.json"
    got = s.read("abc123def456", "aaaa000001")
    assert isinstance(got, CellResult) and got.schema_version == SCHEMA_VERSION == 3 and got.done
    assert got.host == HOST and got.upgraded_from is None
    assert json.loads(p.read_text()) == got.model_dump(mode="json")  # the file is the model, nothing else
    assert s.status("missing", "aaaa000001") is None and len(s.all()) == 1


def test_a_dict_that_is_not_a_result_is_refused_on_write(tmp_path):
    with pytest.raises(ResultUnreadable, match="status"):
        ResultStore(tmp_path).write({"cell_id": "c1", "matrix": "m", "label": "l", "plan": {}, "status": "maybe"})
    assert not (tmp_path / "cells").exists()


def test_results_are_per_host(tmp_path):
    """The same cell id on two hosts: two files, two results; one host's done says nothing about the other's."""
    s = ResultStore(tmp_path)
    s.write(doc(status="done"))
    s.write(doc(status="failed", host=OTHER, reason="serve: boom"))
    assert s.status("abc123def456", HOST["host_id"]) == "done"
    assert s.status("abc123def456", OTHER["host_id"]) == "failed"
    assert s.status("abc123def456", "cccc000003") is None
    assert sorted(p.name for p in (tmp_path / "cells").glob("*.json")) == [
        "abc123def456@aaaa000001.json",
        "abc123def456@bbbb000002.json",
    ]
    assert {r.host_id for r in s.all()} == {HOST["host_id"], OTHER["host_id"]}
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
    s.write(doc(status="done", finished_at="2025-01-03T00:00:00+00:00"))  # a later success replaces it
    assert s.read("abc123def456", "aaaa000001").finished_at == "2025-01-03T00:00:00+00:00"


def test_failed_attempt_over_failed_or_absent_replaces_it(tmp_path):
    s = ResultStore(tmp_path)
    assert s.write(doc(status="failed", reason="first")) == s.path("abc123def456", "aaaa000001")
    assert s.write(doc(status="failed", reason="second")) == s.path("abc123def456", "aaaa000001")
    assert s.read("abc123def456", "aaaa000001").reason == "second"
    assert not (tmp_path / "attempts").exists()
    s.write(doc(status="done", host=OTHER))  # another host's done result does not protect this host's file
    s.write(doc(status="failed", reason="third"))
    assert s.read("abc123def456", "aaaa000001").reason == "third"
    assert s.status("abc123def456", OTHER["host_id"]) == "done"


def test_a_result_without_a_probed_host_is_stored_as_unprobed(tmp_path):
    """harness/cell/ records host_id None with the probe's error when the probe fails."""
    s = ResultStore(tmp_path)
    p = s.write(doc(host={"host_id": None, "label": None, "error": "probe failed: no vllm"}))
    assert p.name == f"abc123def456@{UNPROBED_HOST_ID}.json"
    h = s.read("abc123def456", UNPROBED_HOST_ID).host
    assert h["host_id"] == UNPROBED_HOST_ID and h["error"] == "probe failed: no vllm" and h["label"]
    assert CellResult.model_validate(doc(host=None)).host_id == UNPROBED_HOST_ID


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    s = ResultStore(tmp_path)
    s.write(doc())
    with pytest.raises(TypeError):
        write_json_atomic(s.path("abc123def456", "aaaa000001"), {"status": "done", "obj": _Unserialisable()})
    assert s.status("abc123def456", "aaaa000001") == "done"
    assert [p.name for p in (tmp_path / "cells").iterdir()] == ["abc123def456@aaaa000001.json"]  # no temp left


class _Unserialisable:
    def __repr__(self):
        raise TypeError("cannot serialise")

    __str__ = __repr__


def test_unreadable_files_are_refused_with_a_reason_never_trusted(tmp_path):
    s = ResultStore(tmp_path)
    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / "aaaaaaaaaaaa@h1.json").write_text('{"cell_id": "aaaaaaaaaaaa", "status": "do')
    (cells / "bbbbbbbbbbbb@h1.json").write_text(json.dumps({"schema_version": 99, "status": "done"}))
    (cells / "cccccccccccc@h1.json").write_text(json.dumps({"schema_version": 3, "cell_id": "c", "status": "done"}))
    (cells / "dddddddddddd@h1.json").write_text("[1, 2]")
    for cid in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc", "dddddddddddd"):
        assert s.status(cid, "h1") is None
    assert s.all() == []
    results, refused = s.scan()
    why = {p.name.split("@")[0]: w for p, w in refused}
    assert results == [] and len(why) == 4
    assert "JSONDecodeError" in why["aaaaaaaaaaaa"]
    assert "schema_version 99 is not readable by this dqbench (reads 1, 2, 3)" in why["bbbbbbbbbbbb"]
    assert "not a valid schema-3 result" in why["cccccccccccc"] and "matrix" in why["cccccccccccc"]
    assert "not a result document" in why["dddddddddddd"]
    assert all(w.startswith(str(cells)) for w in why.values())  # each names its file
    with pytest.raises(ResultUnreadable, match="schema_version 99"):
        upgrade({"schema_version": 99})


def test_figures_derive_from_the_typed_result():
    r = parse(
        doc(
            perf={"levels": [LEVEL], "headline": {"output_tok_s": 999.0}},  # a stored headline is never read
            artefact={"model": "m", "size_bytes": 2**30, "bits_per_weight": 16.0},
            memory={"peak_gib": 3.2, "gpu_peak_gib": 7.5},
            quality={"tasks": {"dq_arc_easy": {"metrics": {"acc": {"value": 0.5, "stderr": 0.1}}}}},
        )
    )
    m = flat_metrics(r)
    assert m["output_tok_s"] == 10.0 and m["size_gib"] == 1.0 and m["failed_requests"] == 0
    assert m["peak_mem_gib"] == 3.2 and m["gpu_peak_gib"] == 7.5 and m["quality"] == {"dq_arc_easy": {"acc": 0.5}}
    assert flat_metrics(None) == {} and figures(None) == {}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_the_derived_headline_is_what_each_fixture_stored(version):
    """Stored headlines were computed by measure at the time; deriving from the levels must agree (these
    fixtures have no steady window, so every figure is the whole level's, and the headline says so)."""
    raw = fixture(version)
    r = parse(raw)
    h = headline(r.perf.levels)
    assert {k: h[k] for k in raw["perf"]["headline"]} == raw["perf"]["headline"]
    assert h["headline_window"] == "level"


def test_fixture_of_schema_v1_still_loads():
    raw = fixture(1)
    assert raw["schema_version"] == 1 and "host" not in raw
    r = parse(raw)
    assert r.schema_version == SCHEMA_VERSION and r.upgraded_from == 1
    assert r.host["host_id"] == UNKNOWN_HOST_ID and r.host["label"] == UNKNOWN_LABEL
    m = flat_metrics(r)
    assert m["output_tok_s"] > 0 and m["quality"] and m["gpu_peak_gib"] is None
    assert r.items("dq_arc_easy", "acc") == {}  # its samples are long gone: no items, and it says why


def test_v1_file_in_the_old_place_reads_as_the_unknown_host(tmp_path):
    s = ResultStore(tmp_path)
    raw = fixture(1)
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / f"{raw['cell_id']}.json").write_text(json.dumps(raw))
    assert s.status(raw["cell_id"], UNKNOWN_HOST_ID) == "done"
    assert s.status(raw["cell_id"], HOST["host_id"]) is None  # not this host's: it runs again here
    assert [r.host_id for r in s.all()] == [UNKNOWN_HOST_ID]
    assert set(s.hosts_of(raw["cell_id"])) == {UNKNOWN_HOST_ID}


def test_fixture_of_schema_v2_loads_without_items_when_work_is_gone():
    r = parse(fixture(2))
    assert r.upgraded_from == 2 and r.host_id == "ab04ec95c6"
    assert r.host["label"] == "AMD EPYC 7B13 · avx2 · 2 cores" and r.host["fingerprint"]["isa"] == "avx2"
    assert flat_metrics(r)["output_tok_s"] > 0
    assert all(t.items == [] for t in r.quality.tasks.values())


def test_schema_v2_items_come_from_its_work_samples_while_they_exist(tmp_path):
    """A v2 result moved with its results folder: the recorded samples_path is stale, the cell's work folder
    (per host) still has the samples."""
    s = ResultStore(tmp_path)
    raw = fixture(2)
    samples = s.work_dir(raw["cell_id"]) / raw["host"]["host_id"] / "samples"
    samples.mkdir(parents=True)
    (samples / "dq_arc_easy.jsonl").write_text(
        "".join(json.dumps({"doc_id": i, "acc": i % 2, "acc_norm": 1, "target": 0}) + "\n" for i in range(4))
    )
    (samples / "dq_pydoc_ppl.jsonl").write_text(json.dumps({"doc_id": 0, "word_perplexity": [-3.2, 5]}) + "\n")
    s.cells_dir.mkdir()
    s.path(raw["cell_id"], raw["host"]["host_id"]).write_text(json.dumps(raw))
    r = s.read(raw["cell_id"], raw["host"]["host_id"])
    assert r.upgraded_from == 2
    assert r.items("dq_arc_easy", "acc") == {0: 0.0, 1: 1.0, 2: 0.0, 3: 1.0}
    assert r.items("dq_arc_easy", "acc_norm") == dict.fromkeys(range(4), 1.0)
    assert r.quality.tasks["dq_pydoc_ppl"].items == []  # a perplexity's per-sample value is not a score
    assert r.quality.tasks["dq_lambada"].items == []  # no file: none


def test_fixture_of_schema_v3_carries_its_items():
    raw = fixture(3)
    r = parse(raw)
    assert r.upgraded_from is None and r.model_dump(mode="json") == raw  # v3 reads back unchanged
    arc = r.quality.tasks["dq_arc_easy"]
    acc = r.items("dq_arc_easy", "acc")
    assert len(acc) == arc.n == 200 and sum(acc.values()) / len(acc) == arc.metrics["acc"].value
    assert r.items("dq_pydoc_ppl", "acc") == {} and r.items("no_such_task", "acc") == {}


def test_no_temp_files_after_many_writes(tmp_path):
    s = ResultStore(tmp_path)
    for i in range(20):
        s.write(doc(status="failed" if i % 2 else "done"))
    assert os.listdir(tmp_path / "cells") == ["abc123def456@aaaa000001.json"]


def test_a_failure_never_replaces_a_file_this_dqbench_cannot_read(tmp_path):
    store = ResultStore(tmp_path)
    p = store.path("c1", "h1")
    p.parent.mkdir(parents=True)
    p.write_text('{"schema_version": 99, "status": "done"}')  # written by a newer dqbench
    where = store.write(doc(cell_id="c1", status="failed", host={"host_id": "h1", "label": "h"}))
    assert where.parent.name == "attempts" and '"schema_version": 99' in p.read_text()
