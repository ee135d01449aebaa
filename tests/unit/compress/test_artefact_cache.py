"""Compressed artefacts in a cell's work folder (harness/compress/base.py, build_artefact): two processes
building one artefact build it once; a stage that dies half-way leaves nothing that is served; an artefact
whose manifest lists a missing or truncated file (or whose record does not read as its type) is built again;
the record the worker returned is published with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.compress.base import artefact_manifest, artefact_ready, build_artefact
from harness.jobs import Record
from harness.locks import leftovers

REPO = Path(__file__).resolve().parents[3]

RACE = """
import json, os, sys, time
from pathlib import Path
from harness.compress.base import build_artefact
from harness.jobs import Record
class PidRecord(Record):
    pid: int
final, journal = Path(sys.argv[1]), Path(sys.argv[2])
def run(out, env):
    with open(journal, "a") as f:
        f.write(f"{os.getpid()}\\n")
    out.mkdir()
    (out / "config.json").write_text("{}")
    time.sleep(1.5)
    (out / "model.safetensors").write_bytes(b"q" * 2048)
    return PidRecord(pid=os.getpid())
got = build_artefact(final, final.parent / "compress-record.json", run, PidRecord, what="the test artefact",
                     log=final.parent / "compress.log")
print(json.dumps({"built": got.built, "pid": got.record.pid, "size": (final / "model.safetensors").stat().st_size}),
      flush=True)
"""


class FakeRecord(Record):
    method: str
    n: int


class Empty(Record):
    pass


def fake_stage(calls: list, *, size: int = 1024, die: bool = False):
    def run(out: Path, env: dict) -> FakeRecord:
        calls.append(env)
        out.mkdir()
        (out / "config.json").write_text("{}")
        if die:
            raise RuntimeError("stage exited with 1")
        (out / "model.safetensors").write_bytes(b"q" * size)
        return FakeRecord(method="test", n=len(calls))

    return run


def build(final: Path, record: Path, run, record_type=FakeRecord):
    return build_artefact(final, record, run, record_type, what="a", log=final.parent / "c.log")


def test_two_processes_build_one_artefact_once(tmp_path):
    work = tmp_path / "work" / "cell"
    work.mkdir(parents=True)
    final, journal = work / "model", tmp_path / "journal"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(RACE), str(final), str(journal)],
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for _ in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(json.loads(out.splitlines()[-1]))
    assert len(journal.read_text().split()) == 1
    assert sorted(o["built"] for o in outs) == [False, True] and all(o["size"] == 2048 for o in outs)
    assert outs[0]["pid"] == outs[1]["pid"]  # the waiter reads the builder's record
    assert artefact_ready(final) and not leftovers(final) and not leftovers(work / "compress-record.json")
    assert "waiting for the test artefact" in (work / "compress.log").read_text()


def test_artefact_record_and_manifest_are_published_together(tmp_path):
    final, record, calls = tmp_path / "model", tmp_path / "compress-record.json", []
    got = build(final, record, fake_stage(calls))
    assert got.built and got.record == FakeRecord(method="test", n=1)
    assert json.loads(record.read_text()) == {"method": "test", "n": 1}
    sizes = json.loads(artefact_manifest(final).read_text())["sizes"]
    assert sizes == {
        "model/config.json": 2,
        "model/model.safetensors": 1024,
        "compress-record.json": record.stat().st_size,
    }
    assert calls[0]["DQBENCH_BUILDER_LOCK"].endswith(".tmp.lock")  # the stage holds its builder lock
    again = build(final, record, fake_stage(calls))
    assert not again.built and len(calls) == 1 and again.record == got.record  # read back from the file


def test_a_record_that_does_not_read_as_its_type_is_built_again(tmp_path):
    """An artefact whose record another version wrote in another shape is redone, never served with it."""
    final, record, calls = tmp_path / "model", tmp_path / "compress-record.json", []
    build(final, record, fake_stage(calls))
    record.write_text(json.dumps({"method": "test", "n": "x"}).ljust(len(record.read_text())))  # same size
    assert artefact_ready(final)  # the manifest alone would reuse it
    got = build(final, record, fake_stage(calls))
    assert got.built and got.record.n == 2 and len(calls) == 2


def test_a_stage_that_dies_half_way_leaves_nothing_served(tmp_path):
    final, record, calls = tmp_path / "model", tmp_path / "compress-record.json", []
    build(final, record, fake_stage(calls))
    (final / "model.safetensors").write_bytes(b"q" * 10)  # a truncated artefact from an earlier crash
    assert not artefact_ready(final)
    with pytest.raises(RuntimeError):
        build(final, record, fake_stage(calls, die=True))
    assert not artefact_ready(final) and not artefact_manifest(final).exists()
    assert not leftovers(final) and not leftovers(record)
    assert build(final, record, fake_stage(calls, size=4096)).built
    assert artefact_ready(final) and (final / "model.safetensors").stat().st_size == 4096
    assert json.loads(record.read_text())["n"] == 3


def test_a_single_file_artefact(tmp_path):
    final, record = tmp_path / "model-Q4_K_M.gguf", tmp_path / "compress-record.json"

    def run(out: Path, env: dict) -> Empty:
        out.write_bytes(b"GGUF" + b"\0" * 60)
        return Empty()

    assert build(final, record, run, Empty).built
    assert json.loads(artefact_manifest(final).read_text())["sizes"]["model-Q4_K_M.gguf"] == 64
    final.unlink()
    assert not artefact_ready(final)
