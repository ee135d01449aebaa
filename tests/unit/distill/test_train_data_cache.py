"""The training data folder (harness/distill/data.py, TrainData) prepared by its typed job, with a slow fake
worker (tests/fakes/slow_data_worker.py, SlowTrainDataJob) and real processes: two cells preparing at once
build it once and both see it whole, with the stage's stats in the manifest; a valid folder is used as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from harness.distill.data import DataFingerprint, TrainData
from harness.evaluate.data import OLMO_PKG, OLMO_VERSION
from harness.locks import leftovers
from harness.settings import load_settings
from tests.fakes.slow_data_worker import SlowTrainDataJob

REPO = Path(__file__).resolve().parents[3]

PREPARE = """
import json, sys
from pathlib import Path
from tests.unit.distill.test_train_data_cache import Slow
from harness.settings import load_settings

td = Slow(load_settings())
td.prepare(Path(sys.argv[1]))
print(json.dumps({"ready": td.ready(), "manifest": json.loads(td.manifest.read_text())}), flush=True)
"""


class Slow(TrainData):
    job_type = SlowTrainDataJob


@pytest.fixture
def home(tmp_path, monkeypatch):
    wheels = tmp_path / "home" / "wheels"
    wheels.mkdir(parents=True)
    # a whole zip under the olmo wheel's name: the fake stage never opens it, and nothing is downloaded
    with zipfile.ZipFile(wheels / f"{OLMO_PKG.replace('-', '_')}-{OLMO_VERSION}-py3-none-any.whl", "w") as z:
        z.writestr("x.txt", "x")
    for k, v in {
        "DQBENCH_HOME": str(tmp_path / "home"),
        "DQ_TEST_JOURNAL": str(tmp_path / "journal"),
        "DQ_TEST_PAUSE": "1.5",
        "DQBENCH_STAGE_PYTHON": sys.executable,
    }.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def builds(tmp_path: Path) -> list[str]:
    j = tmp_path / "journal"
    return j.read_text().splitlines() if j.is_file() else []


def test_two_cells_preparing_the_training_data_at_once_prepare_it_once(home):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(PREPARE), str(home / f"prepare-{i}.log")],
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for i in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.splitlines()[-1]))
    assert len(builds(home)) == 1
    for o in outs:
        assert o["ready"] and o["manifest"]["stats"] == {"corpus_docs": 1}
        assert {"corpus.jsonl", "prompts_open_qa.jsonl"} <= set(o["manifest"]["files"])
    td = TrainData(load_settings())
    assert td.ready() and not leftovers(td.dir)
    fp = td.fingerprint()
    assert isinstance(fp, DataFingerprint) and fp.version == "train-v1" and fp.files == outs[0]["manifest"]["files"]
    assert td.prompts("open_qa", 5) == ["q?"]


def test_a_valid_folder_is_used_as_it_is(home, monkeypatch):
    monkeypatch.setenv("DQ_TEST_PAUSE", "0")
    td = Slow(load_settings())
    td.prepare(home / "p.log")
    td.prepare(home / "p.log")
    assert td.ready() and len(builds(home)) == 1
