"""harness/locks.py with real processes: a lock dies with its holder (SIGKILL), a busy lock names its holder,
a waiter is told once; `build_once` builds an entry exactly once when two processes race for it, cleans what
a killed builder left, waits for an orphaned stage still writing, and rebuilds an entry whose manifest lists
missing files."""

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

from harness.locks import (
    LockTimeout,
    build_once,
    builder_lock,
    clean_leftovers,
    file_lock,
    file_sizes,
    leftovers,
    listed_present,
    lock_for,
    publish,
    sizes_match,
    unique_tmp,
)

REPO = Path(__file__).resolve().parents[2]


def spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def wait_for(cond, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


HOLD = """
import sys, time
from pathlib import Path
from harness.locks import file_lock
with file_lock(Path(sys.argv[1]), what="the test entry"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_lock_released_when_holder_is_sigkilled_and_timeout_names_holder(tmp_path):
    lock = tmp_path / "e.lock"
    p = spawn(HOLD, str(lock), "60")
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(LockTimeout) as e, file_lock(lock, what="the test entry", timeout=0.3, poll=0.05):
            pass
        assert "the test entry is locked by" in str(e.value) and f"pid {p.pid}" in str(e.value)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        t = time.monotonic()
        with file_lock(lock, what="the test entry", timeout=5):
            assert time.monotonic() - t < 2  # the kernel dropped the dead holder's lock
            assert f"pid {os.getpid()}:" in lock.read_text()
    finally:
        p.kill()
        p.wait()


def test_on_wait_is_called_once_naming_the_holder(tmp_path):
    lock = tmp_path / "e.lock"
    p = spawn(HOLD, str(lock), "1.0")
    try:
        assert p.stdout.readline().strip() == "locked"
        said = []
        with file_lock(lock, what="the test entry", poll=0.02, on_wait=said.append):
            pass
        assert len(said) == 1 and f"pid {p.pid}" in said[0] and "waiting for the test entry" in said[0]
    finally:
        p.kill()
        p.wait()


def test_free_lock_calls_no_on_wait(tmp_path):
    said = []
    with file_lock(tmp_path / "e.lock", what="x", timeout=0, on_wait=said.append):
        pass
    assert said == []


# A builder in another process: a folder entry with a data file and a manifest written last; the builder
# appends its pid to a journal so the test counts builds, and sleeps in between so the two really overlap.
BUILD = """
import json, os, sys, time
from pathlib import Path
from harness.locks import build_once, listed_present, read_json, file_sizes
final, journal, pause = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
said = []
def valid(p):
    return listed_present(p, read_json(p / "manifest.json"))
def build(tmp):
    with open(journal, "a") as f:
        f.write(f"{os.getpid()}\\n")
    tmp.mkdir()
    (tmp / "data.txt").write_text("x" * 1000)
    time.sleep(pause)
    (tmp / "more.txt").write_text("y" * 10)
    (tmp / "manifest.json").write_text(json.dumps({"sizes": file_sizes(tmp)}))
print("start", flush=True)
built = build_once(final, what="the test entry", valid=valid, build=build, on_wait=said.append)
print(json.dumps({"built": built, "said": said, "valid": valid(final),
                  "data": (final / "data.txt").read_text() == "x" * 1000}), flush=True)
"""


def folder_valid(p: Path) -> bool:
    from harness.locks import read_json

    return listed_present(p, read_json(p / "manifest.json"))


def test_two_processes_racing_build_once_exactly_once(tmp_path):
    final, journal = tmp_path / "cache" / "entry", tmp_path / "journal"
    final.parent.mkdir()
    procs = [spawn(BUILD, str(final), str(journal), "1.5") for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(json.loads(out.splitlines()[-1]))
    assert len(journal.read_text().split()) == 1  # exactly one build
    assert sorted(o["built"] for o in outs) == [False, True]
    assert all(o["valid"] and o["data"] for o in outs)  # both see the complete entry
    waiter = next(o for o in outs if not o["built"])
    builder_pid = int(journal.read_text().split()[0])
    assert len(waiter["said"]) == 1 and f"pid {builder_pid}" in waiter["said"][0]
    assert folder_valid(final) and not leftovers(final)


def test_sigkilled_builder_leaves_a_partial_that_the_next_holder_cleans_and_rebuilds(tmp_path):
    final, journal = tmp_path / "entry", tmp_path / "journal"
    p = spawn(BUILD, str(final), str(journal), "60")
    try:
        wait_for(lambda: any(x.is_dir() for x in leftovers(final)))  # its unique tmp exists, half written
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        p.kill()
        p.wait()
    dead = [x for x in leftovers(final) if x.is_dir()]
    assert dead and not final.exists()
    built = build_once(
        final,
        what="e",
        valid=folder_valid,
        build=lambda tmp: (
            tmp.mkdir(),
            (tmp / "a").write_text("new"),
            (tmp / "manifest.json").write_text(json.dumps({"sizes": {"a": 3}})),
        ),
    )
    assert built and (final / "a").read_text() == "new" and not any(x.exists() for x in dead)
    assert not leftovers(final)


def test_manifest_over_missing_or_truncated_files_is_rebuilt(tmp_path):
    final = tmp_path / "entry"
    calls = []

    def build(tmp):
        calls.append(tmp)
        tmp.mkdir()
        (tmp / "w.bin").write_bytes(b"w" * 100)
        (tmp / "manifest.json").write_text(json.dumps({"sizes": file_sizes(tmp)}))

    assert build_once(final, what="e", valid=folder_valid, build=build)
    assert not build_once(final, what="e", valid=folder_valid, build=build) and len(calls) == 1
    (final / "w.bin").write_bytes(b"w" * 10)  # truncated
    assert not folder_valid(final)
    assert build_once(final, what="e", valid=folder_valid, build=build) and (final / "w.bin").stat().st_size == 100
    (final / "w.bin").unlink()  # missing: a manifest over an empty folder is not trusted
    assert build_once(final, what="e", valid=folder_valid, build=build) and len(calls) == 3


def test_a_build_that_fails_leaves_no_tmp_and_no_entry(tmp_path):
    final = tmp_path / "entry"

    def build(tmp):
        tmp.mkdir()
        (tmp / "half").write_text("x")
        raise RuntimeError("stage failed")

    with pytest.raises(RuntimeError):
        build_once(final, what="e", valid=folder_valid, build=build)
    assert not final.exists() and not leftovers(final)
    assert lock_for(final).is_file()  # lock files stay: removing one while a waiter holds it open would split it


def test_orphaned_stage_is_waited_for_before_its_tmp_is_removed(tmp_path):
    """A stage started by a holder that died keeps writing into its tmp (its own process group): the next
    holder waits on the stage's builder lock, then removes the tmp."""
    final = tmp_path / "entry"
    tmp = unique_tmp(final)
    tmp.mkdir()
    stage = spawn(
        """
        import sys, time
        from harness.locks import hold_builder_lock
        hold_builder_lock(sys.argv[1])
        print("holding", flush=True)
        time.sleep(1.0)
        open(sys.argv[2] + "/late", "w").write("written after the parent died")
    """,
        str(builder_lock(tmp)),
        str(tmp),
    )
    try:
        assert stage.stdout.readline().strip() == "holding"
        said = []
        t = time.monotonic()
        with file_lock(lock_for(final), what="e"):
            gone = clean_leftovers(final, on_wait=said.append)
        assert time.monotonic() - t > 0.3 and stage.poll() is not None  # waited for the orphan to end
        assert tmp in gone and not tmp.exists() and not builder_lock(tmp).exists()
        assert len(said) == 1 and f"pid {stage.pid}" in said[0] and "orphaned builder" in said[0]
    finally:
        stage.kill()
        stage.wait()


def test_leftovers_match_only_this_entrys_temporary_names(tmp_path):
    final = tmp_path / "model"
    mine = [
        unique_tmp(final),
        final.with_name("model.partial"),
        final.with_name(unique_tmp(final).name + ".lock"),
        final.with_name("model.tmp"),
    ]
    others = [
        unique_tmp(tmp_path / "model-Q4.gguf"),
        unique_tmp(tmp_path / "model.manifest.json"),
        tmp_path / "model.lock",
        tmp_path / ".model.json.tmp",
    ]
    for p in mine + others:
        p.write_text("x")
    assert leftovers(final) == sorted(mine)


def test_publish_replaces_an_invalid_folder_whole(tmp_path):
    final = tmp_path / "entry"
    final.mkdir()
    (final / "stale").write_text("old")
    tmp = unique_tmp(final)
    tmp.mkdir()
    (tmp / "fresh").write_text("new")
    publish(tmp, final)
    assert sorted(p.name for p in final.iterdir()) == ["fresh"] and not tmp.exists()
    assert list(tmp_path.iterdir()) == [final]


def test_sizes_match_needs_every_listed_file():
    assert not sizes_match(Path("/nonexistent"), {"a": 1})
    assert not sizes_match(Path("/"), {}) and not sizes_match(Path("/"), None)
    assert not listed_present(Path("/"), None)


def test_wait_reporter_writes_the_log_and_the_live_progress_line(tmp_path, capsys):
    from harness.locks import wait_reporter
    from harness.proc import progress_to

    recs = []
    with progress_to(recs.append):
        wait_reporter(tmp_path / "stage.log")("waiting for student s: locked by pid 7: harness run")
    assert recs and recs[0]["what"] == "waiting for student s: locked by pid 7: harness run"
    assert "locked by pid 7" in (tmp_path / "stage.log").read_text()
    wait_reporter(None)("waiting for x")  # no display, no log (a Ray worker): stderr reaches the driver
    assert "waiting for x" in capsys.readouterr().err


def test_progress_renders_a_wait_record_as_its_message():
    from harness.progress import LiveLine

    line = LiveLine()
    line.update({"what": "waiting for v1 data: locked by pid 7", "unit": "", "done": "", "total": None, "t": 1.0})
    assert line.text().strip() == "waiting for v1 data: locked by pid 7"
