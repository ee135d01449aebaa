"""The student cache (harness/distill/base.py) with real processes and a slow fake training stage
(tests/fakes/slow_distill_worker.py): two cells wanting one student train it once and both get it whole;
a trainer whose orchestrator is SIGKILLed leaves a partial the next build removes; a student whose files
do not match its `.complete` is trained again, and a `.complete` from before sizes were recorded is
still trusted when the checkpoint and record are there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from harness.distill.base import COMPLETE, LogitKD, student_complete
from harness.distill.data import DataFingerprint
from harness.locks import leftovers
from harness.settings import load_settings
from harness.spec.students import DistillSpec
from tests.fakes.slow_distill_worker import SlowDistillJob

REPO = Path(__file__).resolve().parents[3]

BUILD = """
import json, sys
from pathlib import Path
from tests.unit.distill.test_student_cache import FakeData, distiller
from harness.settings import load_settings
st = distiller().build(None, "/teacher", {"kind": "test"}, FakeData(), load_settings(), Path(sys.argv[1]))
print(json.dumps({"reused": st.reused, "key": st.key, "record": st.record,
                  "weights": (st.path / "model.safetensors").stat().st_size}), flush=True)
"""


class FakeData:
    def fingerprint(self) -> DataFingerprint:
        return DataFingerprint(version="test", files={"corpus.jsonl": "sha"})

    def corpus_path(self) -> Path:
        return Path("/nonexistent/corpus.jsonl")


class Slow(LogitKD):
    job_type = SlowDistillJob


def distiller() -> Slow:
    spec = TypeAdapter(DistillSpec).validate_python(
        {"name": "s", "kind": "logit_kd", "max_steps": 3, "student": {"kind": "prune", "keep_every": 2}}
    )
    return Slow(spec)


@pytest.fixture
def env(tmp_path, monkeypatch):
    for k, v in {
        "DQBENCH_HOME": str(tmp_path / "home"),
        "DQBENCH_COMPRESS_PYTHON": sys.executable,
        "DQBENCH_STAGE_PYTHON": sys.executable,
        "DQ_TEST_JOURNAL": str(tmp_path / "journal"),
        "DQ_TEST_PAUSE": "1.5",
    }.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def trainings(tmp_path: Path) -> list[str]:
    j = tmp_path / "journal"
    return j.read_text().splitlines() if j.is_file() else []


def spawn(log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(BUILD), str(log)],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def final_dir() -> Path:
    d = distiller()
    return load_settings().home / "students" / d.student_key({"kind": "test"}, FakeData().fingerprint())


def build(log: Path):
    return distiller().build(None, "/teacher", {"kind": "test"}, FakeData(), load_settings(), log)


def test_two_cells_wanting_one_student_train_it_once(env):
    procs = [spawn(env / f"distill-{i}.log") for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.splitlines()[-1]))
    assert len(trainings(env)) == 1
    assert sorted(o["reused"] for o in outs) == [False, True]
    assert outs[0]["record"] == outs[1]["record"] and all(o["weights"] == 4096 for o in outs)
    logs = [(env / f"distill-{i}.log").read_text() for i in range(2)]
    assert sum("waiting for student s" in t for t in logs) == 1
    final = final_dir()
    assert student_complete(final) and not leftovers(final)
    listed = json.loads((final / COMPLETE).read_text())["sizes"]
    assert listed["model/model.safetensors"] == 4096 and "record.json" in listed


def test_killed_trainer_leaves_a_partial_that_the_next_build_removes(env, monkeypatch):
    monkeypatch.setenv("DQ_TEST_PAUSE", "3")
    p = spawn(env / "killed.log")
    final = final_dir()
    try:
        end = time.monotonic() + 60
        while not (any(x.is_dir() for x in leftovers(final)) and trainings(env)):
            assert time.monotonic() < end and p.poll() is None
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        p.kill()
        p.wait()
    partial = [x for x in leftovers(final) if x.is_dir()]
    assert partial and not student_complete(final)
    monkeypatch.setenv("DQ_TEST_PAUSE", "0")
    st = build(env / "again.log")
    assert not st.reused and len(trainings(env)) == 2 and student_complete(final)
    assert not any(x.exists() for x in partial) and not leftovers(final)


def test_student_whose_files_do_not_match_is_trained_again(env, monkeypatch):
    monkeypatch.setenv("DQ_TEST_PAUSE", "0")
    first = build(env / "d.log")
    assert not first.reused and build(env / "d.log").reused and len(trainings(env)) == 1
    (first.path / "model.safetensors").unlink()  # a `.complete` over missing weights
    assert not student_complete(first.path.parent)
    again = build(env / "d.log")
    assert not again.reused and len(trainings(env)) == 2 and (again.path / "model.safetensors").is_file()


def test_old_empty_complete_marker_is_trusted_only_over_a_whole_student(env, monkeypatch):
    monkeypatch.setenv("DQ_TEST_PAUSE", "0")
    final = final_dir()
    (final / "model").mkdir(parents=True)
    (final / COMPLETE).touch()
    (final / "record.json").write_text(json.dumps({"steps": 1}))
    assert not student_complete(final)  # no checkpoint: trained again
    (final / "model" / "config.json").write_text("{}")
    (final / "model" / "model.safetensors").write_bytes(b"w")
    assert student_complete(final)
    st = build(env / "d.log")
    assert st.reused and st.record == {"steps": 1} and not trainings(env)
