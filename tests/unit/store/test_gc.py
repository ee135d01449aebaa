"""`harness gc` (harness/store/gc.py, harness/cli/gc.py): a dry run lists what no stored result needs with its
size and removes nothing; --delete removes exactly that; what a result names or stands for stays."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app
from harness.store import gc

HOST, OTHER = "aaaa000001", "bbbb000002"


def _write(p: Path, n: int = 100) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x" * n)
    return p


def _layout(root: Path, home: Path) -> dict[str, Path]:
    res = root / "results"
    named = _write(res / "work" / "cell1" / HOST / "shift" / "20260101T000000Z-1-aaaaaa" / "logprobs.npz", 1000)
    student = _write(home / "students" / "k1" / "model.safetensors", 5000)
    doc = {
        "cell_id": "cell1",
        "host": {"host_id": HOST},
        "status": "done",
        "shift": {"dump": str(named)},
        "distill": {"path": str(student.parent)},
    }
    _write(res / "cells" / f"cell1@{HOST}.json").write_text(json.dumps(doc))
    _write(res / "cells" / "broken@x.json").write_text("{not json")  # unreadable: its cell is kept whole
    return {
        "named": named,
        "student": student.parent,
        "artefact": _write(res / "work" / "cell1" / "model" / "w.safetensors", 3000),
        "log": _write(res / "logs" / "cell1" / "server.log", 200),
        "broken": _write(res / "work" / "broken" / "model" / "w", 10),
        # garbage:
        "old_attempt": _write(
            res / "work" / "cell1" / HOST / "shift" / "20250101T000000Z-9-bbbbbb" / "logprobs.npz", 700
        ),
        "other_host": _write(res / "work" / "cell1" / OTHER / "samples" / "t.jsonl", 300),
        "orphan_work": _write(res / "work" / "cell9" / "model" / "w.safetensors", 4000),
        "orphan_log": _write(res / "logs" / "cell9" / "compress.log", 50),
        "tmp": _write(res / "cells" / ".cell2@x.json.abc.tmp", 20),
        "teacher": _write(home / "teacher-cache" / "deadbeef.pt", 900),
        "student_unused": _write(home / "students" / "k2" / "model.safetensors", 800).parent,
        "gguf": _write(home / "gguf" / "0123" / "model-bf16.gguf", 600).parent,
        "lock": _write(home / "students" / "k2.lock", 0),
    }


def test_what_no_result_needs_is_found_with_its_size(tmp_path):
    home = tmp_path / "home"
    f = _layout(tmp_path, home)
    keep = gc.stored(tmp_path / "results")
    found = {g.path: g for g in gc.results_garbage(tmp_path / "results", keep)}
    want = {
        f["old_attempt"].parent,
        f["other_host"].parent.parent,
        f["orphan_work"].parent.parent,
        f["orphan_log"].parent,
        f["tmp"],
    }
    assert set(found) == want
    assert found[f["orphan_work"].parent.parent].bytes == 4000 and found[f["old_attempt"].parent].bytes == 700
    caches = {g.path for g in gc.cache_garbage(home, keep)}
    assert caches == {f["teacher"], f["student_unused"], f["gguf"]}  # the named student and lock files stay


def test_the_command_is_a_dry_run_unless_told_and_then_removes_exactly_that(tmp_path, monkeypatch):
    home = tmp_path / "home"
    f = _layout(tmp_path, home)
    monkeypatch.setenv("DQBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DQBENCH_HOME", str(home))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    r = CliRunner().invoke(app, ["gc", "--caches", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert (
        not doc["deleted"] and len(doc["items"]) == 8 and doc["bytes"] == 700 + 300 + 4000 + 50 + 20 + 900 + 800 + 600
    )
    after = sorted(str(p) for p in tmp_path.rglob("*") if p.name != ".writer.lock")
    assert after == before  # a dry run removes nothing (it holds the results writer lock while it looks)
    r = CliRunner().invoke(app, ["gc", "--delete"])
    assert r.exit_code == 0 and "freed" in r.output, r.output
    for k in ("old_attempt", "other_host", "orphan_work", "orphan_log", "tmp"):
        assert not f[k].exists(), k
    for k in ("named", "artefact", "log", "broken", "student", "teacher", "student_unused", "gguf", "lock"):
        assert f[k].exists(), k  # results' needs, and caches (not asked for)
    r = CliRunner().invoke(app, ["gc", "--delete", "--caches"])
    assert r.exit_code == 0 and not f["teacher"].exists() and not f["gguf"].exists() and f["student"].exists()
    assert f["lock"].exists()


def test_a_running_matrix_blocks_gc(tmp_path, monkeypatch):
    from harness.runner import writer_lock

    monkeypatch.setenv("DQBENCH_RESULTS", str(tmp_path / "results"))
    with writer_lock(tmp_path / "results"):
        r = CliRunner().invoke(app, ["gc"])
    assert r.exit_code != 0 and "another `harness run` is writing" in r.output
    assert os.path.isdir(tmp_path / "results")


def test_a_copied_results_folder_keeps_what_its_results_name(tmp_path):
    """Results name their dumps by absolute path; in a copy of the folder the same place is still needed."""
    import shutil

    home = tmp_path / "home"
    f = _layout(tmp_path, home)
    shutil.copytree(tmp_path / "results", tmp_path / "copy")
    keep = gc.stored(tmp_path / "copy")
    found = {g.path for g in gc.results_garbage(tmp_path / "copy", keep)}
    copied = tmp_path / "copy" / f["named"].relative_to(tmp_path / "results")
    assert copied.parent not in found and copied.is_file()
    assert tmp_path / "copy" / f["old_attempt"].parent.relative_to(tmp_path / "results") in found
