"""The store's one file mode (harness/store/files.py): result JSONs, attempts, the DuckDB index and its WAL all
0600 by default under the usual umask (022), DQBENCH_FILE_MODE widens it for a group, bad modes are refused."""

from __future__ import annotations

import os
import stat

import pytest

from harness.errors import DQError
from harness.store import db
from harness.store.files import file_mode
from harness.store.results import ResultStore, parse
from tests.unit.store.test_db import FIXTURE


def done_result():
    return parse(FIXTURE)


def failed_result():
    return parse({**FIXTURE, "status": "failed", "failed_stage": "evaluate", "reason": "boom"})


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture(autouse=True)
def usual_umask():
    old = os.umask(0o022)  # what a shell usually has: new files 0644
    try:
        yield
    finally:
        os.umask(old)


def test_results_attempts_and_the_index_share_one_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("DQBENCH_FILE_MODE", raising=False)
    store = ResultStore(tmp_path)
    done = done_result()
    path = store.write(done)
    attempt = store.write(failed_result())  # beside the done one: an attempt file
    assert attempt.parent == store.attempts_dir
    index = tmp_path / "dqbench.duckdb"
    db.ingest(index, [(done.plan, done)])
    assert {_mode(p) for p in (path, attempt, index)} == {0o600}
    assert not (tmp_path / "dqbench.duckdb.wal").exists() or _mode(tmp_path / "dqbench.duckdb.wal") == 0o600
    # an index an older dqbench left world-readable gets the mode at the next ingest; a rebuild keeps it
    os.chmod(index, 0o644)
    db.ingest(index, [(done.plan, done)])
    assert _mode(index) == 0o600
    db.rebuild(index, [done])
    assert _mode(index) == 0o600
    # new files made outside the store keep the process's umask (the umask was only held during the ingest)
    (tmp_path / "other").write_text("x")
    assert _mode(tmp_path / "other") == 0o644


def test_a_group_mode_widens_every_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DQBENCH_FILE_MODE", "0640")
    store = ResultStore(tmp_path)
    done = done_result()
    path = store.write(done)
    db.ingest(tmp_path / "i.duckdb", [(done.plan, done)])
    assert _mode(path) == _mode(tmp_path / "i.duckdb") == 0o640


@pytest.mark.parametrize("bad", ["0777", "0755", "0666", "0400", "rw", "1600"])
def test_a_mode_that_is_not_a_private_data_file_is_refused(bad):
    with pytest.raises(DQError, match="DQBENCH_FILE_MODE"):
        file_mode({"DQBENCH_FILE_MODE": bad})
    assert file_mode({}) == 0o600 and file_mode({"DQBENCH_FILE_MODE": "660"}) == 0o660
