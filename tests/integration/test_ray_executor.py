"""`harness run --executor ray` on a local Ray instance (2 CPUs) with the fake engine: the same rows as the
local executor, one cell at a time on the one node (its `dq_perf` slot), a worker killed mid-cell retried, retries
exhausted -> failed. Several nodes: tests/integration/test_ray_cluster.py."""

import json
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO
from tests.fakes.plugins import fake_run

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture
def setup(tmp_path):
    env, path = fake_run(
        tmp_path,
        "ray-run",
        3,
        {
            "input_tokens": 16,
            "output_tokens": 8,
            "warmup_requests": 0,
            "profiles": [{"kind": "synchronous", "requests": 4}, {"kind": "concurrency", "levels": [2], "requests": 4}],
        },
        FAKE_EVAL_SLEEP="2",
    )
    return env, path, tmp_path


def run(env, matrix, results, *extra):
    t = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(matrix), *extra],
        env=dict(env, DQBENCH_RESULTS=str(results)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return r, time.monotonic() - t


def docs(results):
    return {p.stem: json.loads(p.read_text()) for p in (results / "cells").glob("*.json")}


def test_ray_gives_the_same_rows_as_local(setup):
    env, matrix, tmp = setup
    r_local, t_local = run(env, matrix, tmp / "local")
    r_ray, t_ray = run(env, matrix, tmp / "ray", "--executor", "ray")
    assert r_local.returncode == 0, r_local.stderr[-2000:]
    assert r_ray.returncode == 0, r_ray.stderr[-2000:]
    a, b = docs(tmp / "local"), docs(tmp / "ray")
    assert set(a) == set(b) and len(a) == 3
    for cid in a:
        assert a[cid]["status"] == b[cid]["status"] == "done"
        assert [lv["completed"] for lv in a[cid]["perf"]["levels"]] == [
            lv["completed"] for lv in b[cid]["perf"]["levels"]
        ]
        assert a[cid]["quality"] == b[cid]["quality"]
    # one node, one perf slot: the cells ran one after another, never beside another cell's load test
    spans = sorted((d["started_at"], d["finished_at"]) for d in b.values())
    assert all(spans[i + 1][0] >= spans[i][1] for i in range(len(spans) - 1)), spans
    assert "Ray node" in r_ray.stderr and "stage measure" in r_ray.stderr  # workers' lines reach the driver
    print(f"wall time, 3 fake cells: local {t_local:.1f} s, ray {t_ray:.1f} s")
    # resume is the same on Ray: nothing left to run
    r, _ = run(env, matrix, tmp / "ray", "--executor", "ray")
    assert r.returncode == 0 and "0 cell(s) to run" in r.stderr


def test_worker_killed_mid_cell_is_retried(setup):
    env, matrix, tmp = setup
    crash = tmp / "crash"
    crash.mkdir()
    r, _ = run(dict(env, FAKE_EVAL_CRASH_DIR=str(crash)), matrix, tmp / "res", "--executor", "ray", "--retries", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(crash.glob("*.crashed"))) == 3  # every cell's first worker died
    d = docs(tmp / "res")
    assert {x["status"] for x in d.values()} == {"done"}
    for key in d:  # the dead workers' servers went down with them (logs are per cell: key is cell@host)
        for pid in (tmp / "res" / "logs" / key.split("@")[0] / "server.pids").read_text().split():
            p = int(pid)
            assert not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE


def test_retries_exhausted_is_stored_as_failed(setup):
    env, matrix, tmp = setup
    crash = tmp / "crash"
    crash.mkdir()
    r, _ = run(
        dict(env, FAKE_EVAL_CRASH_DIR=str(crash), FAKE_EVAL_CRASH_ALWAYS="1"),
        matrix,
        tmp / "res",
        "--executor",
        "ray",
        "--retries",
        "1",
    )
    assert r.returncode == 1
    d = docs(tmp / "res")
    assert len(d) == 3
    for x in d.values():
        assert x["status"] == "failed" and x["failed_stage"] == "executor" and "after 1 retries" in x["reason"]
