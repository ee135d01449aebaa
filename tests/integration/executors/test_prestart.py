"""DQBENCH_PRESTART=1 through a real `harness run` on the fake engine (real server processes, the real
lifecycle): the second cell's server starts while the first evaluates, its serve step takes it, and no
server outlives the run."""

import json

import psutil

from tests.fakes.plugins import fake_run
from tests.integration.test_runner import cells, harness, host_file

LOAD = {
    "input_tokens": 16,
    "output_tokens": 4,
    "warmup_requests": 1,
    "profiles": [{"kind": "synchronous", "requests": 2}],
}


def test_the_next_cells_server_starts_while_this_one_evaluates(tmp_path):
    host, _ = host_file(tmp_path, "a", ["avx", "avx2"])
    env, matrix = fake_run(
        tmp_path,
        "prestart",
        2,
        LOAD,
        DQBENCH_RESULTS=str(tmp_path / "results"),
        DQBENCH_HOST_CAPS=str(host),
        DQBENCH_HOST_CAPS_RUN="1",
        DQBENCH_PRESTART="1",
        FAKE_EVAL_SLEEP="4",  # long enough for the next server to come up meanwhile
    )
    r = harness(env, "run", str(matrix), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    docs = sorted(cells(tmp_path / "results").values(), key=lambda d: d["started_at"])
    assert [d["status"] for d in docs] == ["done", "done"]
    assert "serve.ahead" not in docs[0]["timings"]
    assert docs[1]["timings"]["serve.ahead"] > 0, (docs[1]["timings"], r.stdout[-3000:])
    assert "its server starting ahead" in r.stdout + r.stderr  # the progress lines
    # every server either cell ever started is gone (the taken one stopped with its cell)
    for d in docs:
        pids = (tmp_path / "results" / "logs" / d["cell_id"] / "server.pids").read_text().split()
        for pid in map(int, pids):
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert json.loads(json.dumps(docs[1]["serve"]))["startup_s"] > 0
