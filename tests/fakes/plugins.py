"""Fake server and evaluator plugins for runner tests (loaded through DQBENCH_PLUGINS).

The fake server is a real subprocess (tests/fakes/openai_server.py) run through the real lifecycle
code; the fake evaluator asks that server for one completion so a dead server fails the cell.
FAKE_EVAL_FAIL=1 makes evaluation fail; FAKE_EVAL_SLEEP=S makes it slow (to interrupt it).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

from harness.errors import StageError
from harness.serve.base import free_port, launch


class FakeServer:
    engine = "fake"
    request_extras: dict = {}

    def __init__(self, spec, python, device):  # noqa: ANN001
        self.spec = spec

    def start(self, artefact, served_name, log_path: Path, trust_remote_code=False):  # noqa: ANN001
        port = free_port()
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port), "--model", served_name,
               "--ttft", "0.02", "--itl", "0.002", "--spawn-child"]
        h = launch("fake", cmd, {}, port, served_name, log_path, "/health", 30)
        h.loaded = {"served_model": served_name, "dtype": artefact.dtype, "quantization": None}
        (Path(log_path).parent / "server.pid").write_text(str(h.pid))
        return h


class FakeEvaluator:
    kind = "lm_eval"

    def __init__(self, spec, settings):  # noqa: ANN001
        self.spec = spec

    def plan_problems(self):
        return []

    def prepare(self, log):  # noqa: ANN001
        return None

    def evaluate(self, base_url, model, tokenizer, workdir, log):  # noqa: ANN001
        time.sleep(float(os.environ.get("FAKE_EVAL_SLEEP", "0")))
        if os.environ.get("FAKE_EVAL_FAIL") == "1":
            raise StageError("evaluate", "injected evaluation failure", "last log line")
        body = json.dumps({"model": model, "prompt": [1, 2, 3], "max_tokens": 2, "stream": True}).encode()
        req = urllib.request.Request(base_url + "/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
            ok = r.status == 200 and b"[DONE]" in r.read()
        return {"lm_eval_version": "fake", "tasks": {t.name: {"metrics": {"acc": {"value": 1.0 if ok else 0.0,
                                                                                "stderr": 0.0}},
                                                              "n": 1, "limit": t.limit, "num_fewshot": 0}
                                                     for t in self.spec.tasks}}
