"""Bounded waits (issue #30): a cell whose lock another process holds fails after DQBENCH_LOCK_WAIT_S with who
holds it, instead of waiting for ever; the machine's limits are read from the environment and checked."""

from __future__ import annotations

import dataclasses
import time

import pytest

from harness.cell import execute_cell
from harness.errors import DQError
from harness.locks import file_lock
from harness.plan import plan_matrix
from harness.settings import load_settings
from harness.spec import parse_matrix
from harness.store.results import ResultStore


def test_a_held_cell_lock_fails_the_cell_after_the_wait(settings, base_matrix):
    cell = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512").cells[0]
    impatient = dataclasses.replace(settings, lock_wait_s=0.5)
    lock = ResultStore(settings.results_dir).work_dir(cell.cell_id) / ".cell.lock"
    with file_lock(lock, what="the test"):  # another attempt of the same cell (its orphaned server, say)
        t = time.monotonic()
        r = execute_cell(cell, impatient)
        waited = time.monotonic() - t
    assert r.status == "failed" and r.failed_stage == "prepare"
    assert f"cell {cell.cell_id} is locked by pid" in r.reason and "DQBENCH_LOCK_WAIT_S" in r.reason
    assert 0.4 < waited < 30


def test_the_machines_limits_come_from_the_environment():
    s = load_settings({"DQBENCH_LOCK_WAIT_S": "90", "DQBENCH_DOWNLOAD_TIMEOUT_S": "7200"})
    assert (s.lock_wait_s, s.download_timeout_s) == (90.0, 7200.0)
    d = load_settings({})
    assert (d.lock_wait_s, d.download_timeout_s) == (3600.0, 21600.0)
    for bad in ("0", "-5", "soon", "inf"):
        with pytest.raises(DQError, match="DQBENCH_LOCK_WAIT_S"):
            load_settings({"DQBENCH_LOCK_WAIT_S": bad})
