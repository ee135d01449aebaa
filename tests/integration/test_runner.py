"""The runner end to end with a fake server and evaluator, as a real `harness run` subprocess:
resume, failed cells stored with their reason, Ctrl-C leaves no server and no half cell, one writer."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import psutil
import pytest

from tests.conftest import REPO
from tests.fakes.plugins import fake_run


def host_file(tmp_path: Path, name: str, isa_flags: list[str]) -> tuple[Path, str]:
    """A HostCaps JSON for DQBENCH_HOST_CAPS (the run is then keyed by this host, not the machine's probe);
    returns (path, host id)."""
    from harness.hw.caps import CpuInfo, HostCaps

    caps = HostCaps(cpu=CpuInfo(model=f"Test CPU {name}", arch="x86_64", cores=2, memory_gib=8.0, flags=isa_flags))
    path = tmp_path / f"host-{name}.json"
    path.write_text(caps.model_dump_json())
    return path, caps.host_id


@pytest.fixture
def env_and_matrix(tmp_path):
    host, _ = host_file(tmp_path, "a", ["avx", "avx2"])
    env, path = fake_run(
        tmp_path,
        "fake-run",
        2,
        {
            "input_tokens": 16,
            "output_tokens": 4,
            "warmup_requests": 1,
            "profiles": [{"kind": "synchronous", "requests": 2}, {"kind": "concurrency", "levels": [2], "requests": 4}],
        },
        DQBENCH_RESULTS=str(tmp_path / "results"),
        DQBENCH_HOST_CAPS=str(host),
        DQBENCH_HOST_CAPS_RUN="1",
    )
    return env, path, tmp_path / "results"


def harness(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def cells(results: Path) -> dict[str, dict]:
    """`<cell_id>@<host_id>` -> result."""
    return {p.stem: json.loads(p.read_text()) for p in (results / "cells").glob("*.json")}


def test_run_resume_and_force(env_and_matrix):
    env, matrix, results = env_and_matrix
    r = harness(env, "run", str(matrix))
    assert r.returncode == 0, r.stderr
    docs = cells(results)
    assert len(docs) == 2 and {d["status"] for d in docs.values()} == {"done"}
    d = next(iter(docs.values()))
    # a finished run ends with its answer: the table, the advisor's pick for this host, the dashboard command
    assert "status: fake-run" in r.stdout and "advisor (cpu memory 8 GiB" in r.stdout
    assert "./dq dashboard" in r.stdout.splitlines()[-1]
    assert [lv["profile"] for lv in d["perf"]["levels"]] == ["synchronous", "concurrency"]
    assert (
        d["perf"]["levels"][1]["completed"] == 4 and d["quality"]["tasks"]["arc_easy"]["metrics"]["acc"]["value"] == 1.0
    )
    assert d["environment"]["packages"] and d["timings"]["serve"] > 0
    con = duckdb.connect(str(results / "dqbench.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM cells WHERE status = 'done'").fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM perf").fetchone()[0] == 4
    con.close()

    mtimes = {p: p.stat().st_mtime for p in (results / "cells").glob("*.json")}
    t = time.monotonic()
    r = harness(env, "run", str(matrix))
    assert r.returncode == 0 and "0 cell(s) to run" in r.stderr
    assert time.monotonic() - t < 10
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes  # nothing re-run

    cid = next(iter(docs)).split("@")[0]
    r = harness(env, "run", str(matrix), "--force", "--cell", cid)
    assert r.returncode == 0 and "1 cell(s) to run" in r.stderr
    r = harness(env, "run", str(matrix), "--cell", "nope")
    assert r.returncode == 1 and "not in the plan" in r.stderr


def test_failed_cell_is_stored_and_the_matrix_goes_on(env_and_matrix):
    env, matrix, results = env_and_matrix
    r = harness(dict(env, FAKE_EVAL_FAIL="1"), "run", str(matrix))
    assert r.returncode == 1
    docs = cells(results)
    assert len(docs) == 2  # the second cell ran although the first failed
    for d in docs.values():
        assert d["status"] == "failed" and d["failed_stage"] == "evaluate"
        assert "injected evaluation failure" in d["reason"] and d["log_tail"] == "last log line"
        assert d["perf"]["levels"]  # what was measured before the failure is kept
        pid = int((Path(d["logs"]["dir"]) / "server.pid").read_text())
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    s = json.loads(harness(env, "status", str(matrix), "--json").stdout)
    assert {c["status"] for c in s} == {"failed"}
    # a later healthy run retries failed cells
    assert harness(env, "run", str(matrix)).returncode == 0
    assert {d["status"] for d in cells(results).values()} == {"done"}


def test_ctrl_c_leaves_no_server_and_no_half_cell(env_and_matrix):
    env, matrix, results = env_and_matrix
    p = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(matrix)],
        env=dict(env, FAKE_EVAL_SLEEP="60"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pidfile = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and pidfile is None:
        found = list((results / "logs").glob("*/server.pid")) if (results / "logs").is_dir() else []
        pidfile = found[0] if found else None
        time.sleep(0.2)
    assert pidfile, "the fake server never started"
    server = psutil.Process(int(pidfile.read_text()))
    family = [server, *server.children(recursive=True)]
    time.sleep(2)  # into the (slow) evaluate stage
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err
    for proc in family:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert not list((results / "cells").glob("*.json")) if (results / "cells").is_dir() else True


def test_sigterm_also_cleans_up(env_and_matrix):
    env, matrix, results = env_and_matrix
    p = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(matrix)],
        env=dict(env, FAKE_EVAL_SLEEP="60"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    found = []
    while time.monotonic() < deadline and not found:
        found = list((results / "logs").glob("*/server.pid")) if (results / "logs").is_dir() else []
        time.sleep(0.2)
    assert found
    server = psutil.Process(int(found[0].read_text()))
    time.sleep(1)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == 130
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE


def test_second_writer_is_refused(env_and_matrix):
    env, matrix, results = env_and_matrix
    p = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(matrix)],
        env=dict(env, FAKE_EVAL_SLEEP="20"),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (results / ".writer.lock").exists():
            time.sleep(0.2)
        time.sleep(0.5)
        r = harness(env, "run", str(matrix))
        assert r.returncode == 1 and "another `harness run` is writing" in r.stderr
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)


def test_resume_is_per_host_and_a_failed_attempt_keeps_the_done_result(env_and_matrix, tmp_path):
    env, matrix, results = env_and_matrix
    _, host_a = host_file(tmp_path, "a", ["avx", "avx2"])
    assert harness(env, "run", str(matrix)).returncode == 0
    done = cells(results)
    assert {k.split("@")[1] for k in done} == {host_a}
    assert all(d["host"]["host_id"] == host_a and d["host"]["source"].startswith("override:") for d in done.values())
    s = json.loads(harness(env, "status", str(matrix), "--json").stdout)
    assert {(c["status"], c["host_id"]) for c in s} == {("done", host_a)}

    # another host: the same cell ids are not done there, so they run again; the first host's results stay
    path_b, host_b = host_file(tmp_path, "b", ["avx", "avx2", "avx512f"])
    env_b = dict(env, DQBENCH_HOST_CAPS=str(path_b))
    s = json.loads(harness(env_b, "status", str(matrix), "--json").stdout)
    assert {c["status"] for c in s} == {"planned"} and all("not on this host" in c["reason"] for c in s)
    r = harness(env_b, "run", str(matrix))
    assert r.returncode == 0 and "2 cell(s) to run" in r.stderr, r.stderr
    both = cells(results)
    assert len(both) == 4 and {k.split("@")[1] for k in both} == {host_a, host_b}
    assert {k: both[k]["finished_at"] for k in done} == {k: d["finished_at"] for k, d in done.items()}
    con = duckdb.connect(str(results / "dqbench.duckdb"), read_only=True)
    assert con.execute(
        "SELECT host_id, count(*) FROM cells WHERE status = 'done' GROUP BY host_id ORDER BY 1"
    ).fetchall() == sorted([(host_a, 2), (host_b, 2)])
    assert con.execute("SELECT count(*) FROM hosts").fetchone()[0] == 2
    con.close()

    # a forced re-run that fails on host A: reported failed, stored beside the done result, which stays
    r = harness(dict(env, FAKE_EVAL_FAIL="1"), "run", str(matrix), "--force")
    assert r.returncode == 1 and "this attempt failed; kept the done result" in r.stderr
    after = cells(results)
    assert {k: d["status"] for k, d in after.items()} == dict.fromkeys(both, "done")
    assert {k: after[k]["finished_at"] for k in done} == {k: d["finished_at"] for k, d in done.items()}
    attempts = list((results / "attempts").glob(f"*@{host_a}-*.json"))
    assert len(attempts) == 2 and all(json.loads(p.read_text())["status"] == "failed" for p in attempts)
    s = json.loads(harness(env, "status", str(matrix), "--json").stdout)
    assert {c["status"] for c in s} == {"done"}
    con = duckdb.connect(str(results / "dqbench.duckdb"), read_only=True)
    assert con.execute("SELECT DISTINCT status FROM cells").fetchall() == [("done",)]
    con.close()
    # and the index rebuilt from the JSONs holds the same rows (attempts are not results)
    assert harness(env, "db", "rebuild").returncode == 0
    con = duckdb.connect(str(results / "dqbench.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 4
    con.close()


def test_a_held_index_never_stops_the_run_and_rebuild_catches_it_up(env_and_matrix):
    """A `duckdb` shell holding results/dqbench.duckdb for the whole run: the run warns once, stores every
    result JSON, and ends normally; `harness db rebuild` afterwards indexes them."""
    from tests.fakes.duckdb_holder import held

    env, matrix, results = env_and_matrix
    results.mkdir(parents=True, exist_ok=True)
    index = results / "dqbench.duckdb"
    with held(index) as pid:
        t = time.monotonic()
        r = harness(env, "run", str(matrix))
        took = time.monotonic() - t
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert {d["status"] for d in cells(results).values()} == {"done"} and len(cells(results)) == 2
    # the progress console wraps long lines on a pipe: read the warnings as the words they are
    warnings = " ".join(r.stderr.split()).split("WARNING: ")[1:]
    assert len(warnings) == 2, r.stderr  # the first failure, and what is still missing at the end
    assert warnings[0].startswith(f"DuckDB index not updated: the results index {index} is locked by PID {pid}")
    assert "harness db rebuild" in warnings[0] and f"{index} still misses 2 cell(s)" in warnings[1]
    assert took < 120
    rebuilt = harness(env, "db", "rebuild")
    assert rebuilt.returncode == 0 and "rebuilt from 2 result file(s)" in rebuilt.stdout, rebuilt.stderr
    con = duckdb.connect(str(index), read_only=True)
    assert con.execute("SELECT count(*) FROM cells WHERE status = 'done'").fetchone()[0] == 2
    con.close()
