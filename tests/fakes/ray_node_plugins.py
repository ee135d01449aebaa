"""Fake engine plugins that say which node ran them, for the two-node Ray test (loaded through DQBENCH_PLUGINS).

The server notes when it starts serving and the evaluator when the cell's last server use ends, each with the
node (DQ_NODE, set in that node's `ray start` environment), in the JSON-lines file DQ_RAY_TRACE: the cell's
perf window on its node. The evaluator also runs the cell's stage interpreter (`settings.python`) and records
the settings the worker used, so a worker that took the driver's paths is seen (and the driver's
interpreter in that test refuses to run off the driver).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.fakes.plugins import FakeEvaluator, FakeServer


def _trace(**rec) -> None:
    path = os.environ.get("DQ_RAY_TRACE")
    if path:
        with open(path, "a") as f:  # one short line per write: appends from two nodes do not interleave
            f.write(json.dumps({"node": os.environ.get("DQ_NODE"), "pid": os.getpid(), **rec}) + "\n")


class NodeServer(FakeServer):
    def start(self, artefact, served_name, log_path, trust_remote_code=False):
        _trace(event="serve", model=served_name, t=time.time())
        return super().start(artefact, served_name, log_path, trust_remote_code)


class NodeEvaluator(FakeEvaluator):
    def __init__(self, spec, settings):
        super().__init__(spec, settings)
        self.settings = settings

    def evaluate(self, scoring, workdir, log):
        s = self.settings
        r = subprocess.run([s.python, "-c", "print('stage interpreter ok')"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"stage interpreter {s.python} failed ({r.returncode}): {r.stderr.strip()}")
        out = super().evaluate(scoring, workdir, log)
        _trace(
            event="end",
            model=scoring.model_args["model"],
            t=time.time(),
            python=s.python,
            home=str(s.home),
            llamacpp=str(s.llamacpp_dir),
            # what the worker process was started with (Ray's runtime_env), not what it holds now
            hf_token=_start_env().get("HF_TOKEN"),
            hf_token_held=os.environ.get("HF_TOKEN"),
        )
        return out


def _start_env() -> dict[str, str]:
    """This process's environment as it was started (/proc/self/environ)."""
    raw = Path("/proc/self/environ").read_bytes()
    return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)


PLUGINS = (
    "server.vllm=tests.fakes.ray_node_plugins:NodeServer,evaluator.lm_eval=tests.fakes.ray_node_plugins:NodeEvaluator"
)
