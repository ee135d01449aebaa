"""Fake server and evaluator plugins for runner tests (loaded through DQBENCH_PLUGINS).

The fake server is a real subprocess (tests/fakes/openai_server.py) run through the real lifecycle
code; the fake evaluator asks that server for one completion so a dead server fails the cell.
FAKE_SERVER_ARGS adds options of tests/fakes/openai_server.py (e.g. "--die-after 3": the engine dies);
FAKE_EVAL_FAIL=1 makes evaluation fail; FAKE_EVAL_SLEEP=S makes it slow (to interrupt it);
FAKE_EVAL_CRASH_DIR=D makes the process running the cell SIGKILL itself, once per cell (or every time
with FAKE_EVAL_CRASH_ALWAYS=1), leaving a marker in D: a worker dying mid-cell.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

from harness.errors import StageError
from harness.result import Metric, Quality, TaskScore
from harness.serve.base import EngineServer
from harness.serve.scoring import Scoring


class FakeServer(EngineServer):
    """The fake engine on the real start-up path (EngineServer.start: free port, launch, health, inspect)."""

    engine = "fake"
    request_extras: ClassVar[dict] = {}

    def command(self, artefact, port: int, served_name: str, trust_remote_code: bool = False) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "tests.fakes.openai_server",
            "--port",
            str(port),
            "--model",
            served_name,
            "--ttft",
            "0.02",
            "--itl",
            "0.002",
        ]
        if not os.environ.get("FAKE_EVAL_CRASH_DIR"):  # a crash test must not leave a grandchild behind
            cmd.append("--spawn-child")
        return cmd + shlex.split(os.environ.get("FAKE_SERVER_ARGS", ""))

    def inspect(self, handle, artefact) -> dict:
        return {"served_model": handle.model_name, "dtype": artefact.dtype, "quantization": None}

    def start(self, artefact, served_name, log_path: Path, trust_remote_code=False):
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        h = super().start(artefact, served_name, log_path, trust_remote_code)
        (Path(log_path).parent / "server.pid").write_text(str(h.pid))
        with open(Path(log_path).parent / "server.pids", "a") as f:  # every attempt's server
            f.write(f"{h.pid}\n")
        return h

    def scoring(self, handle, artefact) -> Scoring:
        return Scoring(
            model="local-completions",
            how="fake",
            model_args={"model": handle.model_name, "base_url": handle.base_url + "/completions"},
        )


class FakeEvaluator:
    kind = "lm_eval"

    def __init__(self, spec, settings):
        self.spec = spec

    def plan_problems(self):
        return []

    def prepare(self, log):
        return None

    def start_ahead(self, log, workdir, sequential=None, env=None):
        return None  # it scores in this process: no worker to start ahead

    def evaluate(self, scoring: Scoring, workdir, log) -> Quality:
        model, base_url = str(scoring.model_args["model"]), str(scoring.model_args["base_url"]).rsplit("/", 1)[0]
        time.sleep(float(os.environ.get("FAKE_EVAL_SLEEP", "0")))
        crash_dir = os.environ.get("FAKE_EVAL_CRASH_DIR")
        if crash_dir:
            marker = Path(crash_dir) / f"{model}.crashed"
            if os.environ.get("FAKE_EVAL_CRASH_ALWAYS") == "1" or not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get("FAKE_EVAL_FAIL") == "1":
            raise StageError("evaluate", "injected evaluation failure", "last log line")
        body = json.dumps({"model": model, "prompt": [1, 2, 3], "max_tokens": 2, "stream": True}).encode()
        req = urllib.request.Request(base_url + "/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            ok = r.status == 200 and b"[DONE]" in r.read()
        return Quality(
            lm_eval_version="fake",
            tasks={
                t.name: TaskScore(
                    metrics={"acc": Metric(value=1.0 if ok else 0.0, stderr=0.0)}, n=1, limit=t.limit, num_fewshot=0
                )
                for t in self.spec.tasks
            },
        )


PLUGINS = "server.vllm=tests.fakes.plugins:FakeServer,evaluator.lm_eval=tests.fakes.plugins:FakeEvaluator"


def fake_run(tmp_path: Path, name: str, n_models: int, load: dict, **env: str) -> tuple[dict, Path]:
    """(environment, matrix path) for a `harness run` subprocess on the fake engine; skips the test when
    the embedded model (whose tokenizer the load generator needs) is not prepared."""
    import pytest

    from tests.conftest import REPO

    path = fake_matrix(tmp_path, name, n_models, load)
    if path is None:
        pytest.skip("embedded model not prepared (./dq setup prepares it)")
    return dict(os.environ, DQBENCH_PLUGINS=PLUGINS, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", **env), path


def fake_matrix(tmp_path: Path, name: str, n_models: int, load: dict) -> Path | None:
    """A matrix of `n_models` local copies of the embedded model's config and tokenizer (no weights:
    the fake engine never loads them), for runner and executor tests. None if the model is not prepared."""
    import shutil

    import yaml

    from tests.conftest import MATRICES

    home = Path(os.environ.get("DQBENCH_HOME") or Path.home() / ".cache" / "dqbench")
    src = home / "models" / "smollm2-135m-instruct"
    if not (src / "tokenizer.json").is_file():
        return None
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, model / f)
    m = yaml.safe_load((MATRICES / "smollm2-cpu.yaml").read_text())
    m["name"] = name
    m["models"] = [{"name": f"tiny{i}", "source": {"kind": "local", "path": str(model)}} for i in range(n_models)]
    m["load"] = load
    # the baseline only: the fake engine serves no quantized artefact and returns no prompt logprobs
    m["axes"] = {"precision": ["bf16"], "method": ["none"], "distill": ["none"]}
    m.pop("methods", None)
    m.pop("students", None)
    m.pop("decide", None)  # the fake evaluator scores no items (tests/unit/test_runner_until.py fakes decisions)
    m.pop("drafts", None)  # the default's draft is its student
    m.pop("extra_serving", None)
    m["evaluation"]["shift"] = None
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(m))
    return path
