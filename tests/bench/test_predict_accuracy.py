"""bench/predict_accuracy.py runs leave-one-out over a results folder and prints each goal, met or not."""

import json
import os
import subprocess
import sys

from harness.hw.probe import load_override
from harness.store.results import ResultStore
from tests.conftest import REPO
from tests.unit.predict.conftest import results_on


def test_the_bench_prints_errors_per_engine_and_scheme_and_the_goals(tmp_path):
    caps = load_override("cpu-avx512")
    store = ResultStore(tmp_path / "results")
    for r in results_on(caps.host_block()):
        store.write(r)
    out = tmp_path / "rows.json"
    env = dict(os.environ, DQBENCH_HOST_CAPS="cpu-avx512", PYTHONPATH=str(REPO))
    r = subprocess.run(
        [sys.executable, "bench/predict_accuracy.py", "--results", str(tmp_path / "results"), "--json", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "2 done cells" in r.stdout and "(this host)" in r.stdout and "vllm:w8a8-int8" in r.stdout
    assert "memory         vllm bf16" in r.stdout and "goals (issue #32):" in r.stdout
    assert "memory: mean abs. error" in r.stdout and ("MET" in r.stdout)
    rows = json.loads(out.read_text())
    assert {row["figure"] for row in rows} >= {"memory", "decode", "ttft", "drop-blind"}
