"""`harness run --executor ray` on a two-node Ray cluster started on this machine (`ray start --head` and a second
`ray start --address`), each node with its own environment: its own stage interpreter and llama.cpp folder, and
one `dq_perf` slot. The fake engine records which node ran what (tests/fakes/ray_node_plugins.py).

Shown: each worker uses its node's paths (the driver's interpreter exits 3 off the driver) and never gets the
driver's HF_TOKEN (the plan downloads nothing: harness/credentials.py), both nodes share DQBENCH_HOME, a node
runs one cell's perf window at a time while the two nodes run side by side, and workers' stage lines reach the
driver. A driver whose DQBENCH_HOME the nodes do not share is refused before any cell runs, naming the nodes.
The cluster's processes are found by its temp folder and ended, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO
from tests.fakes.plugins import fake_matrix
from tests.fakes.ray_node_plugins import PLUGINS

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
PRESET = REPO / "harness" / "hw" / "presets" / "cpu-avx2.json"
LOAD = {
    "input_tokens": 16,
    "output_tokens": 8,
    "warmup_requests": 0,
    "profiles": [{"kind": "synchronous", "requests": 4}],
}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wrapper(path: Path, body: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\n{body}\nexec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return str(path)


def _base_env() -> dict[str, str]:
    """This process's environment without dqbench's variables: each node gets only its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQBENCH_") and k != "HF_TOKEN"}
    env.update(PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", DQBENCH_HOST_CAPS=str(PRESET))
    return env


def _end_processes(mark: str) -> None:
    """End the processes this cluster started: those whose command line names its temp folder, and their
    children. By pid, never `ray stop` (it would stop every Ray on the machine)."""
    me = os.getpid()
    found = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid != me and mark in " ".join(p.info["cmdline"] or []):
                found.add(p)
                found.update(p.children(recursive=True))
        except psutil.Error:
            pass
    for p in found:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(found), timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.fixture(scope="module")
def cluster():
    tmp = Path(tempfile.mkdtemp(prefix="dqray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    home = Path(os.environ.get("DQBENCH_HOME") or Path.home() / ".cache" / "dqbench")  # the shared home
    gcs, *ports = _free_ports(17)
    trace = tmp / "trace.jsonl"
    nodes = {}
    try:
        for i, name in enumerate("ab"):
            p = ports[8 * i : 8 * i + 8]
            env = dict(
                _base_env(),
                DQ_NODE=name,
                DQ_RAY_TRACE=str(trace),
                DQBENCH_HOME=str(home),
                DQBENCH_STAGE_PYTHON=_wrapper(tmp / name / "bin" / "python", f'echo "{name} $*" >> {tmp}/stage.log'),
                DQBENCH_LLAMACPP=str(tmp / name / "llama.cpp"),
                DQBENCH_ENGINE="cpu",
                FAKE_EVAL_SLEEP="2",
            )
            (tmp / name / "llama.cpp").mkdir(parents=True)
            head = ["--head", f"--port={gcs}", "--include-dashboard=false", f"--ray-client-server-port={p[7]}"]
            args = [
                "start",
                *(head if name == "a" else [f"--address=127.0.0.1:{gcs}"]),
                "--num-cpus=2",
                '--resources={"dq_perf": 1}',
                f"--temp-dir={tmp / 'ray'}",
                f"--node-manager-port={p[0]}",
                f"--object-manager-port={p[1]}",
                f"--dashboard-agent-listen-port={p[2]}",
                f"--dashboard-agent-grpc-port={p[3]}",
                f"--metrics-export-port={p[4]}",
                f"--runtime-env-agent-port={p[5]}",
                "--min-worker-port=0",
                "--max-worker-port=0",
                "--object-store-memory=100000000",
                "--disable-usage-stats",
            ]
            r = subprocess.run([*RAY, *args], env=env, capture_output=True, text=True, timeout=180)
            assert r.returncode == 0, f"ray start node {name}: {r.stdout[-1500:]}{r.stderr[-1500:]}"
            nodes[name] = env
        yield {"tmp": tmp, "home": home, "address": f"127.0.0.1:{gcs}", "trace": trace}
    finally:
        _end_processes(str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)


def _driver_env(c: dict, home: Path) -> dict[str, str]:
    tmp = c["tmp"]
    driver_py = _wrapper(
        tmp / "driver" / "bin" / "python",
        '[ "$DQ_ROLE" = driver ] || { echo "the driver\'s interpreter ran off the driver" >&2; exit 3; }',
    )
    return dict(
        _base_env(),
        DQ_ROLE="driver",
        DQBENCH_HOME=str(home),
        DQBENCH_STAGE_PYTHON=driver_py,
        DQBENCH_LLAMACPP=str(tmp / "driver" / "llama.cpp"),
        DQBENCH_HOST_CAPS_RUN="1",
        DQBENCH_PLUGINS=PLUGINS,
        HF_TOKEN="hf_driver_token",
    )


def _run(env: dict, matrix: Path, results: Path, address: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", str(matrix), "--executor", "ray", "--address", address],
        env=dict(env, DQBENCH_RESULTS=str(results)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_cells_run_with_their_nodes_paths_one_perf_window_per_node(cluster, tmp_path):
    matrix = fake_matrix(tmp_path, "ray-two-nodes", 4, LOAD)
    if matrix is None:
        pytest.skip("embedded model not prepared (./dq setup prepares it)")
    t = time.monotonic()
    r = _run(_driver_env(cluster, cluster["home"]), matrix, tmp_path / "results", cluster["address"])
    wall = time.monotonic() - t
    assert r.returncode == 0, r.stderr[-4000:]
    docs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "cells").glob("*.json")]
    assert len(docs) == 4 and {d["status"] for d in docs} == {"done"}, [d.get("reason") for d in docs]

    recs = [json.loads(x) for x in cluster["trace"].read_text().splitlines()]
    ends = [x for x in recs if x["event"] == "end"]
    assert len(ends) == 4
    tmp = cluster["tmp"]
    for e in ends:  # every cell used its own node's settings, and the home they share
        assert e["python"] == str(tmp / e["node"] / "bin" / "python")
        assert e["llamacpp"] == str(tmp / e["node"] / "llama.cpp")
        assert e["home"] == str(cluster["home"])
        # the plan downloads no hub model: the driver's token stays with the driver (harness/credentials.py)
        assert e["hf_token"] is None and e["hf_token_held"] is None
    assert {e["node"] for e in ends} == {"a", "b"}
    stage_log = (tmp / "stage.log").read_text().split("\n")
    assert {line.split()[0] for line in stage_log if line} == {"a", "b"}

    windows: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    serve = {(x["node"], x["model"]): x["t"] for x in recs if x["event"] == "serve"}
    for e in ends:
        windows[e["node"]].append((serve[(e["node"], e["model"])], e["t"]))
    for node, spans in windows.items():  # one perf window at a time on a node
        spans.sort()
        assert all(spans[i + 1][0] >= spans[i][1] for i in range(len(spans) - 1)), (node, spans)
    # ... while the two nodes worked side by side
    assert any(a0 < b1 and b0 < a1 for a0, a1 in windows["a"] for b0, b1 in windows["b"])
    # the workers' stage lines reached the driver
    assert "on " in r.stderr and "stage evaluate" in r.stderr and "Ray node" in r.stderr
    print(f"4 fake cells on 2 Ray nodes: {wall:.1f} s; windows {windows}")


def test_a_cluster_without_the_drivers_home_is_refused(cluster, tmp_path):
    matrix = fake_matrix(tmp_path, "ray-other-home", 1, LOAD)
    if matrix is None:
        pytest.skip("embedded model not prepared (./dq setup prepares it)")
    other = tmp_path / "driver-home"
    other.mkdir()
    r = _run(_driver_env(cluster, other), matrix, tmp_path / "results", cluster["address"])
    assert r.returncode != 0
    err = " ".join(r.stderr.split())
    assert "the Ray cluster cannot run this plan" in err, r.stderr[-3000:]
    assert f"not the storage of the driver's {other}" in err and f"DQBENCH_HOME={cluster['home']}" in err
    assert err.count("not the storage of the driver's") == 2  # both nodes named
    assert not (tmp_path / "results" / "cells").exists() or not list((tmp_path / "results" / "cells").glob("*"))
