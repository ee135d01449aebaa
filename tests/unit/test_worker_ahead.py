"""A worker started before its job is known (harness/worker_ahead.py): it imports its job type's `warm_imports`,
prepares from the parent's hint (`warm_with`), and then runs the job `run_worker` hands it; anything that does
not match (environment, a dead or slow worker) falls back to a fresh worker, a failed preparation to the job
building what it needs, and nothing is left behind, claimed or not."""

from __future__ import annotations

import os
import sys

from harness.jobs import Job, Record
from harness.proc import WorkerProgress, progress_to, run_worker
from harness.settings import load_settings
from harness.worker_ahead import claim, settle_ahead, start_ahead, workers_ahead

WARM = "colorsys"  # a module nothing in harness imports: in sys.modules only when the worker imported it ahead


class Seen(Record):
    twice: int
    warm_imported: bool
    pid: int
    env_x: str | None
    prepared: int | None = None  # the hint's x, when this process prepared from one


_PREPARED: dict[str, int] = {}  # what `prepare` built, in the worker's process


class WarmJob(Job[Seen]):
    worker = "tests.unit.test_worker_ahead:work"
    warm_imports = (WARM,)
    x: int


class ColdJob(Job[Seen]):
    worker = "tests.unit.test_worker_ahead:work"
    x: int


class BrokenWarmJob(Job[Seen]):
    worker = "tests.unit.test_worker_ahead:work"
    warm_imports = ("dqbench_no_such_module_anywhere",)
    x: int


class PreparingJob(Job[Seen]):
    worker = "tests.unit.test_worker_ahead:work"
    warm_imports = (WARM,)
    warm_with = "tests.unit.test_worker_ahead:prepare"
    x: int


class FailingPrepJob(Job[Seen]):
    worker = "tests.unit.test_worker_ahead:work"
    warm_imports = (WARM,)
    warm_with = "tests.unit.test_worker_ahead:prepare_fails"
    x: int


def prepare(hint: dict) -> None:
    _PREPARED["x"] = int(hint["x"])


def prepare_fails(hint: dict) -> None:
    raise ValueError(f"cannot prepare {hint}")


def work(job: WarmJob) -> Seen:
    WorkerProgress("ahead test", "items", total=1).update(1, force=True)
    return Seen(
        twice=job.x * 2,
        warm_imported=WARM in sys.modules,
        pid=os.getpid(),
        env_x=os.environ.get("AHEAD_X"),
        prepared=_PREPARED.get("x"),
    )


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != "w.log")


def test_a_worker_started_ahead_imports_first_then_runs_the_job_it_is_handed(tmp_path):
    log = tmp_path / "logs" / "w.log"
    settings = load_settings()
    seen: list[dict] = []
    with workers_ahead(), progress_to(seen.append):  # as the cell loop runs its steps
        w = start_ahead(WarmJob, log, settings, env={"AHEAD_X": "1"})
        assert w is not None and w.wait_warm(120), log.read_text() if log.exists() else "no log"
        assert not w.job_path.exists() and w.alive()  # warm, and waiting for its job
        rec = run_worker(WarmJob(x=4), log, settings, stage="evaluate", env={"AHEAD_X": "1"}, timeout=120)
        assert w.proc.poll() is not None  # that process ran it, and is gone
    assert rec.twice == 8 and rec.warm_imported and rec.env_x == "1"
    assert [r["what"] for r in seen] == ["ahead test"]  # its live progress reached the cell's display
    assert _leftovers(log.parent) == []  # job, record, marker removed


def test_without_a_worker_ahead_the_job_runs_cold(tmp_path):
    log = tmp_path / "w.log"
    rec = run_worker(WarmJob(x=1), log, load_settings(), stage="evaluate", timeout=120)
    assert rec.twice == 2 and not rec.warm_imported


def test_another_environment_cancels_the_worker_ahead_and_runs_the_job_afresh(tmp_path):
    log = tmp_path / "logs" / "w.log"
    settings = load_settings()
    with workers_ahead():
        w = start_ahead(WarmJob, log, settings, env={})
        assert w is not None and w.wait_warm(120)
        rec = run_worker(WarmJob(x=3), log, settings, stage="evaluate", env={"AHEAD_X": "in-process"}, timeout=120)
        assert w.proc.poll() is not None  # cancelled, not left waiting
    assert rec.twice == 6 and not rec.warm_imported and rec.env_x == "in-process"
    assert _leftovers(log.parent) == []


def test_an_unclaimed_worker_dies_with_its_scope_and_leaves_no_file(tmp_path):
    log = tmp_path / "logs" / "w.log"
    with workers_ahead():
        w = start_ahead(WarmJob, log, load_settings())
        assert w is not None and w.wait_warm(120)
    assert w.proc.poll() is not None
    assert _leftovers(log.parent) == []


def test_nothing_is_started_outside_a_scope_or_for_a_job_type_with_nothing_to_import(tmp_path):
    settings = load_settings()
    assert start_ahead(WarmJob, tmp_path / "w.log", settings) is None
    with workers_ahead():
        assert start_ahead(ColdJob, tmp_path / "w.log", settings) is None
    assert list(tmp_path.iterdir()) == []


def test_a_worker_that_died_while_waiting_is_replaced_by_a_fresh_one(tmp_path):
    from harness.proc import kill_group

    log = tmp_path / "logs" / "w.log"
    settings = load_settings()
    with workers_ahead():
        w = start_ahead(WarmJob, log, settings)
        assert w is not None and w.wait_warm(120)
        kill_group(w.proc, grace=1.0)
        rec = run_worker(WarmJob(x=5), log, settings, stage="evaluate", timeout=120)
    assert rec.twice == 10 and not rec.warm_imported
    assert _leftovers(log.parent) == []


def test_settle_cancels_a_worker_whose_imports_fail_and_its_job_still_runs(tmp_path):
    log = tmp_path / "logs" / "w.log"
    settings = load_settings()
    with workers_ahead():
        w = start_ahead(BrokenWarmJob, log, settings)
        assert w is not None
        notes = settle_ahead(120)
        assert len(notes) == 1 and "not ready" in notes[0] and w.proc.poll() is not None
        assert claim(BrokenWarmJob, log, {}, False, settings.python) is None  # no longer pending
        rec = run_worker(BrokenWarmJob(x=2), log, settings, stage="evaluate", timeout=120)
    assert rec.twice == 4
    assert "dqbench_no_such_module_anywhere" in log.read_text()  # why it was not ready, in the step's log


def test_settle_gives_up_after_its_bound(tmp_path):
    log = tmp_path / "logs" / "w.log"
    with workers_ahead():
        w = start_ahead(WarmJob, log, load_settings())
        assert w is not None
        notes = settle_ahead(0.0)  # a fresh interpreter is not warm at once
        assert notes and w.proc.poll() is not None
    assert _leftovers(log.parent) == []


def test_a_worker_started_ahead_prepares_from_its_hint_before_it_says_it_is_warm(tmp_path):
    log = tmp_path / "logs" / "w.log"
    settings = load_settings()
    with workers_ahead():
        w = start_ahead(PreparingJob, log, settings, hint={"x": 7})
        assert w is not None and w.hint_path.exists()
        assert w.wait_warm(120), log.read_text() if log.exists() else "no log"
        rec = run_worker(PreparingJob(x=7), log, settings, stage="evaluate", timeout=120)
    assert rec.prepared == 7 and rec.twice == 14
    assert "prepared ahead of the job (tests.unit.test_worker_ahead:prepare" in log.read_text()
    assert _leftovers(log.parent) == []  # the hint too


def test_without_a_hint_nothing_is_prepared(tmp_path):
    log = tmp_path / "logs" / "w.log"
    settings = load_settings()
    with workers_ahead():
        w = start_ahead(PreparingJob, log, settings)
        assert w is not None and w.wait_warm(120) and not w.hint_path.exists()
        rec = run_worker(PreparingJob(x=1), log, settings, stage="evaluate", timeout=120)
    assert rec.prepared is None and rec.warm_imported


def test_a_failed_preparation_is_logged_and_the_job_still_runs_in_that_worker(tmp_path):
    log = tmp_path / "logs" / "w.log"
    settings = load_settings()
    with workers_ahead():
        w = start_ahead(FailingPrepJob, log, settings, hint={"x": 3})
        assert w is not None and w.wait_warm(120)  # warm all the same: its imports are done
        rec = run_worker(FailingPrepJob(x=3), log, settings, stage="evaluate", timeout=120)
        assert w.proc.poll() is not None  # that process ran it
    assert rec.twice == 6 and rec.prepared is None and rec.warm_imported
    why = "not prepared ahead (tests.unit.test_worker_ahead:prepare_fails: ValueError: cannot prepare"
    assert why in log.read_text()
    assert _leftovers(log.parent) == []
