"""The typed worker protocol (harness/jobs.py, harness/worker.py, harness/proc.run_worker) and every worker that
uses it: each `*_worker.py` module beside its stage's plugin declares its Job and Record, imports without a
heavy backend, and names a work function typed with that job and record."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from harness.errors import StageError
from harness.jobs import Job, Record
from harness.proc import run_worker, write_job
from harness.settings import load_settings
from harness.worker import main as worker_main
from harness.worker import read_job
from tests.conftest import REPO

HEAVY = ["torch", "vllm", "lm_eval", "transformers", "llmcompressor", "datasets", "tokenizers", "llama_cpp"]
WORKERS = sorted(".".join(p.relative_to(REPO).with_suffix("").parts) for p in (REPO / "harness").rglob("*_worker.py"))


class Doubled(Record):
    twice: int


class DoubleJob(Job[Doubled]):
    worker = "tests.unit.test_jobs:double"
    x: int


class WrongJob(Job[Doubled]):
    worker = "tests.unit.test_jobs:wrong"
    x: int


def double(job: DoubleJob) -> Doubled:
    return Doubled(twice=job.x * 2)


def wrong(job: WrongJob) -> Record:
    return Record()


class AtExitJob(Job[Doubled]):
    worker = "tests.unit.test_jobs:at_exit"
    x: int
    marker: str


def at_exit(job: AtExitJob) -> Doubled:
    import atexit

    atexit.register(lambda: Path(job.marker).write_text("cleaned up"))
    print("last words, unflushed", end="")  # no newline: only a flush at exit writes it
    return Doubled(twice=job.x * 2)


def test_every_worker_lives_beside_its_stage_and_harness_workers_is_gone():
    assert not (REPO / "harness" / "workers").exists()
    stages = {w.split(".")[1] for w in WORKERS}
    assert {"compress", "distill", "evaluate", "models", "plan"} <= stages, WORKERS


def test_worker_modules_import_no_heavy_backend():
    """The parent builds jobs with these modules' classes: importing them must stay cheap."""
    code = "import sys, json\n" + "".join(f"import {m}\n" for m in WORKERS)
    code += f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("module", WORKERS)
def test_each_job_names_a_work_function_typed_with_its_job_and_record(module):
    mod = importlib.import_module(module)
    # (pydantic also files each parametrized `Job[Record]` in the module's namespace: skip those)
    jobs = [
        c
        for c in vars(mod).values()
        if inspect.isclass(c) and issubclass(c, Job) and c.__module__ == module and "[" not in c.__name__
    ]
    assert jobs, f"{module} declares no Job"
    for job_type in jobs:
        target_module, _, fn_name = job_type.worker.partition(":")
        assert target_module == module, f"{job_type.__name__}.worker points outside its module: {job_type.worker}"
        fn = getattr(mod, fn_name)
        hints = typing.get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        assert hints[params[0]] is job_type, (job_type, hints)
        assert hints["return"] is job_type.record_type(), (job_type, hints)


def test_a_job_round_trips_and_refuses_unknown_or_missing_fields(tmp_path):
    write_job(DoubleJob(x=3), tmp_path / "j.json")
    assert read_job(tmp_path / "j.json") == DoubleJob(x=3)
    raw = json.loads((tmp_path / "j.json").read_text())
    raw["job"]["y"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="y"):
        read_job(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="x"):
        DoubleJob.model_validate({})
    assert DoubleJob.record_type() is Doubled and DoubleJob.short_name() == "test_jobs"


def test_the_child_writes_the_record_atomically(tmp_path):
    write_job(DoubleJob(x=21), tmp_path / "j.json")
    worker_main(["--job", str(tmp_path / "j.json"), "--record", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text()) == {"twice": 42}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_worker_returning_another_record_type_fails_and_writes_nothing(tmp_path):
    write_job(WrongJob(x=1), tmp_path / "j.json")
    with pytest.raises(TypeError, match="not its record Doubled"):
        worker_main(["--job", str(tmp_path / "j.json"), "--record", str(tmp_path / "r.json")])
    assert not (tmp_path / "r.json").exists()


def test_run_worker_returns_the_validated_record_and_cleans_up(tmp_path):
    log = tmp_path / "logs" / "w.log"
    rec = run_worker(DoubleJob(x=5), log, load_settings(), stage="compress", timeout=120)
    assert rec == Doubled(twice=10)
    assert sorted(p.name for p in log.parent.iterdir()) == ["w.log"]  # job and record files removed
    assert "DoubleJob" in log.read_text()  # the child logs the job it ran


def test_a_worker_skips_the_teardown_but_not_its_atexit_handlers_or_its_last_output(tmp_path):
    """harness/worker.py ends with `exit_now` once the record is written: the atexit handlers still run, and what
    the worker printed last still reaches its log."""
    log = tmp_path / "logs" / "w.log"
    rec = run_worker(AtExitJob(x=3, marker=str(tmp_path / "m")), log, load_settings(), stage="evaluate", timeout=120)
    assert rec == Doubled(twice=6)
    assert (tmp_path / "m").read_text() == "cleaned up"
    assert "last words, unflushed" in log.read_text()


def test_run_worker_names_the_stage_when_the_worker_fails(tmp_path):
    with pytest.raises(StageError) as e:
        run_worker(WrongJob(x=1), tmp_path / "w.log", load_settings(), stage="evaluate", timeout=120)
    assert e.value.stage == "evaluate" and "not its record" in (e.value.log_tail or "")


def test_a_record_the_parent_cannot_validate_is_a_stage_error(tmp_path, monkeypatch):
    import harness.proc as proc

    real = proc.run_module

    def corrupt(module, args, log_path, settings, **kw):
        real(module, args, log_path, settings, **kw)
        Path(args[args.index("--record") + 1]).write_text('{"twice": "not a number"}')

    monkeypatch.setattr(proc, "run_module", corrupt)
    with pytest.raises(StageError, match="no valid Doubled"):
        run_worker(DoubleJob(x=1), tmp_path / "w.log", load_settings(), stage="shift", timeout=120)
