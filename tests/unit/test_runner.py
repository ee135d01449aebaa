"""Runner._index: the DuckDB index never stops a run (harness/runner.py). The full run with a held index,
as a `harness run` subprocess, is in tests/integration/test_runner.py."""

import json
import time

from harness.runner import Runner
from harness.store import db
from tests.conftest import REPO
from tests.fakes.duckdb_holder import held

DOC = json.loads((REPO / "tests" / "fixtures" / "result-v2.json").read_text())
HOST = DOC["host"]


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, msg: str) -> None:
        self.lines.append(msg)

    def warn(self, msg: str) -> None:  # shown even with --quiet (harness/progress.py)
        self.lines.append(f"WARNING: {msg}")


def _doc(cell_id: str) -> tuple[dict, dict]:
    d = dict(DOC, cell_id=cell_id, plan=dict(DOC["plan"], cell_id=cell_id))
    return d["plan"], d


def test_a_held_index_costs_one_bounded_wait_one_warning_and_catches_up_when_free(settings, monkeypatch):
    monkeypatch.setattr(db, "WRITE_WAIT_S", 1.0)
    runner = Runner(settings, Notes())
    path = settings.db_path
    db.ingest(path, [_doc("cell00000000")])
    with held(path) as pid:
        t = time.monotonic()
        runner._index([_doc("cell00000001")], HOST)  # waits WRITE_WAIT_S, then warns and goes on
        assert 0.9 <= time.monotonic() - t < 5
        t = time.monotonic()
        runner._index([_doc("cell00000002")], HOST)  # after a failure: one try, no wait
        assert time.monotonic() - t < 0.9
    assert len(runner.progress.lines) == 1, runner.progress.lines
    warning = runner.progress.lines[0]
    assert warning.startswith(f"WARNING: DuckDB index not updated: the results index {path} is locked by PID {pid}")
    assert "`harness db rebuild` catches the index up" in warning
    assert "\n" not in warning

    runner._index([_doc("cell00000003")], HOST)  # free again: the missed rows come with this one
    assert "opens again" in runner.progress.lines[-1] and runner._unindexed == []
    con = db.connect_read_only(path)
    assert [r[0] for r in con.execute("SELECT cell_id FROM cells ORDER BY cell_id").fetchall()] == [
        f"cell0000000{i}" for i in range(4)
    ]
    con.close()


def test_a_file_that_is_not_duckdb_is_a_warning_not_an_exception(settings):
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    settings.db_path.write_text("a notebook saved its CSV here\n")
    runner = Runner(settings, Notes())
    runner._index([_doc("cell00000001")], HOST)
    runner._index([_doc("cell00000002")], HOST)
    assert len(runner.progress.lines) == 1 and "is not a DuckDB database" in runner.progress.lines[0]
    assert len(runner._unindexed) == 2  # kept for a later try; `harness db rebuild` has them from the JSONs
