"""Compressed artefacts in a cell's work folder (harness/compress/base.py, build_artefact): two processes
building one artefact build it once; a stage that dies half-way leaves nothing that is served; an artefact
whose manifest lists a missing or truncated file is built again; the record is published with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.compress.base import artefact_manifest, artefact_ready, build_artefact
from harness.locks import leftovers

REPO = Path(__file__).resolve().parents[3]

RACE = """
import json, os, sys, time
from pathlib import Path
from harness.compress.base import build_artefact
final, journal = Path(sys.argv[1]), Path(sys.argv[2])
def run(out, record, env):
    with open(journal, "a") as f:
        f.write(f"{os.getpid()}\\n")
    out.mkdir()
    (out / "config.json").write_text("{}")
    time.sleep(1.5)
    (out / "model.safetensors").write_bytes(b"q" * 2048)
    record.write_text(json.dumps({"pid": os.getpid()}))
built = build_artefact(final, final.parent / "compress-record.json", run, what="the test artefact",
                       log=final.parent / "compress.log")
print(json.dumps({"built": built, "size": (final / "model.safetensors").stat().st_size}), flush=True)
"""


def fake_stage(calls: list, *, size: int = 1024, die: bool = False):
    def run(out: Path, record: Path, env: dict) -> None:
        calls.append(env)
        out.mkdir()
        (out / "config.json").write_text("{}")
        if die:
            raise RuntimeError("stage exited with 1")
        (out / "model.safetensors").write_bytes(b"q" * size)
        record.write_text(json.dumps({"method": "test", "n": len(calls)}))

    return run


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
    assert artefact_ready(final) and not leftovers(final) and not leftovers(work / "compress-record.json")
    assert "waiting for the test artefact" in (work / "compress.log").read_text()


def test_artefact_record_and_manifest_are_published_together(tmp_path):
    final, record, calls = tmp_path / "model", tmp_path / "compress-record.json", []
    assert build_artefact(final, record, fake_stage(calls), what="a", log=tmp_path / "c.log")
    assert json.loads(record.read_text()) == {"method": "test", "n": 1}
    sizes = json.loads(artefact_manifest(final).read_text())["sizes"]
    assert sizes == {
        "model/config.json": 2,
        "model/model.safetensors": 1024,
        "compress-record.json": record.stat().st_size,
    }
    assert calls[0]["DQBENCH_BUILDER_LOCK"].endswith(".tmp.lock")  # the stage holds its builder lock
    assert not build_artefact(final, record, fake_stage(calls), what="a", log=tmp_path / "c.log") and len(calls) == 1


def test_a_stage_that_dies_half_way_leaves_nothing_served(tmp_path):
    final, record, calls = tmp_path / "model", tmp_path / "compress-record.json", []
    build_artefact(final, record, fake_stage(calls), what="a", log=tmp_path / "c.log")
    (final / "model.safetensors").write_bytes(b"q" * 10)  # a truncated artefact from an earlier crash
    assert not artefact_ready(final)
    with pytest.raises(RuntimeError):
        build_artefact(final, record, fake_stage(calls, die=True), what="a", log=tmp_path / "c.log")
    assert not artefact_ready(final) and not artefact_manifest(final).exists()
    assert not leftovers(final) and not leftovers(record)
    assert build_artefact(final, record, fake_stage(calls, size=4096), what="a", log=tmp_path / "c.log")
    assert artefact_ready(final) and (final / "model.safetensors").stat().st_size == 4096
    assert json.loads(record.read_text())["n"] == 3


def test_a_single_file_artefact(tmp_path):
    final, record = tmp_path / "model-Q4_K_M.gguf", tmp_path / "compress-record.json"

    def run(out: Path, rec: Path, env: dict) -> None:
        out.write_bytes(b"GGUF" + b"\0" * 60)
        rec.write_text("{}")

    assert build_artefact(final, record, run, what="g", log=tmp_path / "c.log")
    assert json.loads(artefact_manifest(final).read_text())["sizes"]["model-Q4_K_M.gguf"] == 64
    final.unlink()
    assert not artefact_ready(final)
